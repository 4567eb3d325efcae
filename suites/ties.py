"""Which inputs leave a selection ambiguous, so that properties not about ties can set them aside,
and how strongly rounded scores move an output (`image_score_gain`).

A correct implementation may order exactly (or nearly) equal scores any way it likes unless it
declares the canonical tie rule. Such a tie changes the output only when it is *harmful*:
- it straddles the k-th place (the selected set depends on it), or lies inside the selected set
  while slot order matters (a weighted kernel with slots by rank), and
- the tied candidates carry different values (identical tokens are interchangeable: swapping
  them changes nothing, except where a gradient with respect to the input tells them apart).
Scores count as tied when they differ by at most `suites.tolerance.score_gap` in float64.
The rankings come from `convnn_ref`'s public neighbour functions with one slot more than the
configuration selects; they only decide which examples to draw, never a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import resolve_geometry, scoring_features
from suites import tolerance

F64 = torch.float64


def order_matters(config: ConvNNConfig) -> bool:
    """Slot t meets matrix A_t, and slots are ranked: tied slots in another order change the output."""
    return config.weighted and config.slot_order == "rank" and config.k > 1


def harmful_tie(
    scores: torch.Tensor, index: torch.Tensor, values: torch.Tensor, *, k: int, ordered: bool, gap: float
) -> str | None:
    """The first harmful tie of a ranking, described, or None.

    scores, index ``(R, L)``: each row's candidates by descending score (``L = k`` or ``k + 1``;
    ``-inf`` marks an empty slot), index into ``values`` ``(R, M, C)``: what each candidate
    contributes (rows share ``values`` per batch element: pass it expanded)."""
    pairs = [k - 1] if scores.shape[-1] > k else []
    if ordered:
        pairs += list(range(k - 1))
    for t in pairs:
        a, b = scores[:, t], scores[:, t + 1]
        both_empty = torch.isinf(a) & torch.isinf(b) & (a < 0) & (b < 0)
        tied = ((a - b).abs() <= gap) & ~both_empty
        if not bool(tied.any()):
            continue
        rows = tied.nonzero().flatten()
        va = values[rows, index[rows, t]]
        vb = values[rows, index[rows, t + 1]]
        differ = (va != vb).any(-1)
        if bool(differ.any()):
            row = int(rows[differ.nonzero()[0, 0]])
            where = "at the k-th place" if t == k - 1 else f"inside the selected set (slots {t}, {t + 1})"
            return f"near-tie {where}: scores {float(a[row]):.17g} and {float(b[row]):.17g} of candidates with different values"
    return None


def image_values(x: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
    """What each candidate token of ``cr.neighbours`` contributes, ``(B, M, C')`` float64: the
    token's features (zero at padded points), with the coordinate channels when aggregated."""
    geometry = resolve_geometry(config, tuple(x.shape[2:]))
    x64 = x.detach().to("cpu", F64)
    b, c = x64.shape[:2]
    if config.coord_encoding in ("aggregate", "both"):
        coords = _coordinate_channels(tuple(x64.shape[2:]))
        x64 = torch.cat([x64, coords.expand(b, *coords.shape)], dim=1)
        c = x64.shape[1]
    pad: list[int] = []
    for lo, hi in reversed(geometry.padding):
        pad += [lo, hi]
    if any(pad):
        x64 = torch.nn.functional.pad(x64, pad)
    return x64.reshape(b, c, -1).transpose(1, 2)


def _coordinate_channels(spatial: tuple[int, ...]) -> torch.Tensor:
    axes = [torch.linspace(-1.0, 1.0, n, dtype=F64) if n > 1 else torch.zeros(1, dtype=F64) for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def image_ambiguity(
    x: torch.Tensor,
    config: ConvNNConfig,
    *,
    generator: torch.Generator | None = None,
    scored_dim: int = 1,
    dtype: torch.dtype = F64,
    distinct_tokens: bool = False,
) -> str | None:
    """Why the selection of ``cr.convnn(x, ..., config)`` is ambiguous (a harmful near-tie when
    scores are computed in ``dtype``), or None. ``distinct_tokens``: tokens with equal values
    still differ (a gradient with respect to x flows to whichever token was selected)."""
    x64 = x.detach().to("cpu", F64)

    def ranking(c: ConvNNConfig) -> cr.Neighbours:
        return cr.neighbours(x64, c, generator=_fresh(generator))

    values = image_values(x64, config)
    if distinct_tokens:  # each token's own index: no two candidates carry the same value
        values = torch.arange(values.shape[1], dtype=F64).expand(values.shape[0], -1)[..., None]
    return _ambiguity(ranking, config, values, scored_dim, dtype)


def image_score_gain(x: torch.Tensor, config: ConvNNConfig, *, generator: torch.Generator | None = None) -> float:
    """How far a rounded score may move the output of ``cr.convnn(x, ..., config)`` per unit of
    output and of relative rounding: ``rho_scale * T`` when rho is a softmax (0 otherwise), T the
    size of the terms a score is computed from, at which a correct implementation rounds it:
    ``max|score|`` of the selected slots for positions (exact differences), 1 for cosine,
    ``scale * max|z|^2`` for (scaled) dot products and ``2 * max|z|^2`` for euclidean scores
    (``|q|^2 + |k|^2 - 2 q.k`` cancels), z the scoring features (`scoring_features`). The error
    model's floor grows by that factor (`suites.tolerance.floor`)."""
    if config.rho != "softmax":
        return 0.0
    x64 = x.detach().to("cpu", F64)
    if config.basis == "position":
        nb = cr.neighbours(x64, config, generator=_fresh(generator))
        score = nb.score.detach().to(F64)
        return config.rho_scale * tolerance.finite_max(score if nb.valid is None else score[nb.valid])
    if config.similarity == "cosine":
        return config.rho_scale
    z = scoring_features(x64, config, generator=_fresh(generator))
    size = tolerance.finite_max(z.square().sum(-1))
    if config.similarity == "euclidean":
        return config.rho_scale * 2.0 * size
    scale = 1.0 if config.similarity == "dot" else _scale(config.scale, z.shape[-1])
    return config.rho_scale * scale * size


def attention_score_gain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> float:
    """`image_score_gain` of attention's softmax backward: a score's gradient ``p_j (dO.v_j - sum_i
    p_i dO.v_i)`` cancels at the size of ``|dO| |v|`` (unit cotangents) and then meets a key or a
    query, so gradients round at ``scale * m^2``, m the largest row norm of q, k and v (``scale``
    None: ``1/sqrt(D)``)."""
    m = max(tolerance.finite_max(t.detach().to("cpu", F64).norm(dim=-1)) for t in (q, k, v))
    return _scale(scale, q.shape[-1]) * m * m


def _scale(scale: float | None, dim: int) -> float:
    """A scaled dot product's scale: ``scale``, or SDPA's default ``1/sqrt(dim)``."""
    return 1.0 / math.sqrt(max(dim, 1)) if scale is None else scale


def attention_ambiguity(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: ConvNNConfig,
    *,
    allowed: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> str | None:
    """Why the selection of ``cr.convnn_attention(q, k, v, config, allowed=...)`` is ambiguous, or None."""
    q64, k64 = (t.detach().to("cpu", F64) for t in (q, k))
    mask = None if allowed is None else allowed.cpu()

    def ranking(c: ConvNNConfig) -> cr.Neighbours:
        return cr.attention_neighbours(q64, k64, c, allowed=mask, generator=_fresh(generator))

    return _ambiguity(ranking, config, v.detach().to("cpu", F64), q.shape[-1], F64)


def _ambiguity(
    ranking: Callable[[ConvNNConfig], cr.Neighbours], config: ConvNNConfig, values: torch.Tensor, dim: int, dtype: torch.dtype
) -> str | None:
    """The harmful near-tie of the ranking ``ranking(config with one slot more, by rank)``, read
    against ``values`` ``(B, T, C)`` (what each candidate token contributes), or None."""
    if config.k is None:  # every candidate is selected; such configurations sum over the slots
        return None
    by_rank = config.replace(slot_order="rank")
    nb = None
    for extra in (1, 0):  # one slot more when the candidate set has it
        try:
            nb = ranking(by_rank.replace(k=config.k + extra))
            break
        except ValueError:
            continue
    if nb is None:
        return None
    index, scores = nb.index, nb.score.detach().to(F64)
    if nb.valid is not None:
        scores = scores.masked_fill(~nb.valid, float("-inf"))
    b = values.shape[0]
    if index.dim() == 2:  # a position table, shared by the batch
        index, scores = index.expand(b, *index.shape), scores.expand(b, *scores.shape)
    k = config.k
    if config.self_slot == "forced":  # slot 0 is the own token, whatever its score
        index, scores, k = index[..., 1:], scores[..., 1:], k - 1
    if k < 1:
        return None
    gap = tolerance.score_gap(scores[torch.isfinite(scores)], dtype, dim)
    nq = index.shape[1]
    vals = values[:, None].expand(b, nq, *values.shape[1:]).reshape(b * nq, *values.shape[1:])
    return harmful_tie(scores.reshape(b * nq, -1), index.reshape(b * nq, -1), vals, k=k, ordered=order_matters(config), gap=gap)


def _fresh(generator: torch.Generator | None) -> torch.Generator | None:
    """A copy of ``generator``'s state: the ranking must see the same random draw as the call it
    vouches for, without advancing the caller's generator."""
    if generator is None:
        return None
    g = torch.Generator()
    g.set_state(generator.get_state())
    return g
