"""Intervals for the median of paired ratios.

Each pair of an interleaved measurement (`paired`) gives one ratio ``t_convnn / t_baseline``
taken under the same load; the report states their median and an interval for it.

- `median_interval`: distribution-free, from order statistics. For ``n`` ratios sorted, the
  ``l``-th smallest and the ``l``-th largest bound the median with probability at least
  ``confidence``, ``l`` the largest rank with ``P(Binomial(n, 1/2) < l) <= (1 - confidence)/2``.
  No seed, no resampling; needs ``n >= 6`` at 95 % (below that the whole range is returned and
  `enough` says it is not enough).
- `bootstrap_interval`: the percentile bootstrap of the median with an explicit
  ``numpy.random.Generator`` seed, for comparison (same ratios and seed: same interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Confidence of every interval the report states.
CONFIDENCE = 0.95


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("values must not be empty")
    return float(np.median(np.asarray(values, dtype=float)))


def _binomial_cdf_half(n: int, j: int) -> float:
    """P(Binomial(n, 1/2) <= j)."""
    if j < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(j, n) + 1)) / 2.0**n


def order_rank(n: int, confidence: float = CONFIDENCE) -> int:
    """The 1-based rank ``l`` whose order statistics ``x_(l)``, ``x_(n+1-l)`` bound the median
    with coverage at least ``confidence``; 0 when ``n`` is too small for any."""
    if n < 1:
        return 0
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    tail = (1.0 - confidence) / 2.0
    rank = 0
    for cand in range(1, n // 2 + 1):
        if _binomial_cdf_half(n, cand - 1) <= tail:
            rank = cand
        else:
            break
    return rank


def enough(n: int, confidence: float = CONFIDENCE) -> bool:
    """Whether ``n`` pairs are enough for an order-statistics interval at ``confidence``."""
    return order_rank(n, confidence) > 0


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high) of ``values``: the distribution-free interval of the median (see the
    module docstring); the full range when there are too few values for one."""
    if not values:
        raise ValueError("values must not be empty")
    xs = sorted(float(v) for v in values)
    n = len(xs)
    rank = order_rank(n, confidence)
    if rank == 0:
        return median(xs), xs[0], xs[-1]
    return median(xs), xs[rank - 1], xs[n - rank]


def bootstrap_interval(values: Sequence[float], seed: int = 0, resamples: int = 2000,
                       confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high): the percentile bootstrap of the median, ``resamples`` draws from a
    ``numpy.random.default_rng(seed)``."""
    if not values:
        raise ValueError("values must not be empty")
    if resamples < 1:
        raise ValueError(f"resamples={resamples} must be at least 1")
    xs = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, xs.size, size=(resamples, xs.size))
    medians = np.median(xs[draws], axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(np.median(xs)), float(lo), float(hi)
