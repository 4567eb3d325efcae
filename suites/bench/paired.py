"""Paired, interleaved timing of a ConvNN call (A) against its baseline (B).

Both calls run in this process on their fixed inputs, alternately: A B, then B A, then A B ...
(the order flips every pair, so neither side always runs on a cache the other warmed or in the
slot after a pause). Each pair gives one ratio ``t_A / t_B`` taken under the same load; the
ratio's median and its interval (`intervals.median_interval`, order statistics, 95 %) are what
the report states, never the ratio of two medians timed minutes apart.

A sample of one side is a block of calls long enough to time (``block_s``; fast calls are
repeated, like ``torch.utils.benchmark``'s blocked autorange) divided by its call count.

The clock: with one CPU thread on the CPU, the process's CPU time (``time.process_time``): a
core shared with another job stretches a block's wall time by whatever the scheduler gives the
other job, unevenly between a long block and a short one, while the CPU time the block itself
needs stays put. With several threads (spinning OpenMP threads would count as work) or on CUDA
(the host waits for the device), the wall clock (``time.perf_counter``). Both are recorded; the
record's ``clock`` says which one the ratios use. The
pair count follows a time budget per pair set (``budget_s``), and is at least ``min_pairs``
however slow the calls (a slow case gets as many pairs as a fast one needs for an interval)
and at most ``max_pairs``; past the budget, more pairs while the interval is wider than
±``tight`` of the median, up to ``extend`` times the budget (criterion.rs and pyperf likewise
spend time where the spread asks for it). The CPU time other processes took while the pairs ran
is recorded with them (`host.others_cores`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suites.bench import host, intervals


@dataclass(frozen=True)
class PairPlan:
    """How many pairs and how many calls per sample: ``budget_s`` for the whole set, at least
    ``min_pairs`` and at most ``max_pairs`` pairs, each sample a block of at least ``block_s``."""

    budget_s: float = 2.0
    min_pairs: int = 10
    max_pairs: int = 200
    block_s: float = 0.005
    #: Past the budget, more pairs (4 at a time) while the interval's half-width exceeds this
    #: fraction of the median and the set has run less than ``extend`` times the budget.
    tight: float = 0.04
    extend: float = 2.5

    def __post_init__(self) -> None:
        if self.min_pairs < 1 or self.max_pairs < self.min_pairs:
            raise ValueError(f"need 1 <= min_pairs ({self.min_pairs}) <= max_pairs ({self.max_pairs})")
        if self.budget_s < 0 or self.block_s <= 0:
            raise ValueError(f"budget_s={self.budget_s} must be >= 0 and block_s={self.block_s} > 0")


def calls_per_sample(call_s: float, block_s: float) -> int:
    """Calls in one timed block so that it lasts at least ``block_s``."""
    if call_s <= 0:
        return 1000
    return max(1, math.ceil(block_s / call_s - 1e-9))


def pair_count(pair_s: float, plan: PairPlan) -> int:
    """Pairs that fit ``plan.budget_s`` at ``pair_s`` seconds a pair, within [min, max]."""
    if pair_s <= 0:
        return plan.max_pairs
    return int(min(plan.max_pairs, max(plan.min_pairs, math.floor(plan.budget_s / pair_s + 1e-9))))


CLOCKS = ("cpu", "wall")


def choose_clock(device: str, threads: int) -> str:
    """``cpu`` (process CPU time) for one thread on the CPU, else ``wall``."""
    return "cpu" if device == "cpu" and threads == 1 else "wall"


def _block(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU) seconds per call over a block of ``calls`` calls."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _block_seconds(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    return _block(fn, calls, sync)[0]


def measure_pairs(a: Callable[[], object], b: Callable[[], object], plan: PairPlan,
                  sync: Callable[[], None] = lambda: None, clock: str = "wall") -> dict[str, Any]:
    """Time ``a`` against ``b`` in interleaved pairs (see the module docstring). ``sync`` waits
    for the device (CUDA) before and after each timed block; ``clock``: ``cpu`` or ``wall``
    (`choose_clock`), the one the ratios use. Returns the pair record: ``n``, ``median``,
    ``low``, ``high`` of the ratios t_a / t_b, the ratios and both sides' seconds per call, the
    wall-clock ratio's median beside a CPU-time one, the calls per sample, the wall time and
    the cores other processes used meanwhile."""
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r} must be one of {CLOCKS}")
    for fn in (a, b):  # warm-up: one-time costs, lazy initialisation
        _block(fn, 1, sync)
    first_a, first_b = _block(a, 1, sync)[0], _block(b, 1, sync)[0]
    calls_a, calls_b = calls_per_sample(first_a, plan.block_s), calls_per_sample(first_b, plan.block_s)
    pairs = pair_count(first_a * calls_a + first_b * calls_b, plan)
    start = host.cpu_sample()
    blocks_a: list[tuple[float, float]] = []
    blocks_b: list[tuple[float, float]] = []
    pick = 1 if clock == "cpu" else 0

    def more(count: int) -> None:
        for _ in range(count):
            if len(blocks_a) % 2 == 0:
                blocks_a.append(_block(a, calls_a, sync))
                blocks_b.append(_block(b, calls_b, sync))
            else:
                blocks_b.append(_block(b, calls_b, sync))
                blocks_a.append(_block(a, calls_a, sync))

    more(pairs)
    while len(blocks_a) < plan.max_pairs and time.monotonic() - start.wall < plan.extend * plan.budget_s:
        ratios = [ta[pick] / tb[pick] for ta, tb in zip(blocks_a, blocks_b) if tb[pick] > 0]
        if not ratios:
            break
        mid, low, high = intervals.median_interval(ratios)
        if mid <= 0 or (high - low) / 2 <= plan.tight * mid:
            break
        more(min(4, plan.max_pairs - len(blocks_a)))
    end = host.cpu_sample()
    record = summarize_pairs([t[pick] for t in blocks_a], [t[pick] for t in blocks_b], calls=(calls_a, calls_b),
                             wall_s=end.wall - start.wall, others=host.others_cores(start, end))
    wall_ratios = [ta[0] / tb[0] for ta, tb in zip(blocks_a, blocks_b) if tb[0] > 0]
    record["clock"] = "process CPU time (time.process_time)" if clock == "cpu" else "wall clock (time.perf_counter)"
    record["wall_median"] = intervals.median(wall_ratios) if wall_ratios else None
    return record


def summarize_pairs(times_a: list[float], times_b: list[float], *, calls: tuple[int, int] = (1, 1),
                    wall_s: float | None = None, others: float | None = None) -> dict[str, Any]:
    """The pair record of per-pair seconds ``times_a`` and ``times_b`` (same length)."""
    if len(times_a) != len(times_b) or not times_a:
        raise ValueError(f"times_a ({len(times_a)}) and times_b ({len(times_b)}) must be equally long and not empty")
    ratios = [ta / tb for ta, tb in zip(times_a, times_b) if tb > 0]
    if not ratios:
        raise ValueError("every baseline time is zero: no ratio")
    mid, low, high = intervals.median_interval(ratios)
    return {
        "n": len(ratios),
        "median": mid,
        "low": low,
        "high": high,
        "confidence": intervals.CONFIDENCE,
        "method": "median of per-pair ratios; interval from order statistics (distribution-free)",
        "enough": intervals.enough(len(ratios)),
        "a_median_s": intervals.median(times_a),
        "b_median_s": intervals.median(times_b),
        "calls_per_sample": list(calls),
        "order": "A B, B A alternating",
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "others_cores": None if others is None else round(others, 3),
        "ratios": [round(r, 5) for r in ratios],
    }
