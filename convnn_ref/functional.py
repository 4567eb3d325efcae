"""The reference ConvNN: score, select, aggregate (`ConvNNConfig`), for image-like input
``(B, C, *S)`` (`convnn`, `neighbours`) and for queries, keys and values (`convnn_attention`,
`attention_neighbours`).

Each entry point validates its arguments, then reads as the three steps:

1. score: the scoring features of queries and candidates (`scores.py`; coordinates and the
   padded grid from `positions.py`), or the position scores of the table (`table.py`);
2. select: `select.selection_rule` resolves k (``None``: every candidate), the candidate subset
   (`candidates.py`) and the own tokens once; `select.select` picks each query's slots;
3. aggregate: rho weights and the kernel (`aggregate.py`).

The steps run interleaved per query chunk, within a memory budget, in the routes of
`convnn_ref.fast` (docs/semantics.md, "Routes"). The naive oracle in `naive.py` is written
independently of all of this; the suite holds the two equal.
"""

from __future__ import annotations

import math

import torch

from convnn_ref import positions, scores, select
from convnn_ref.candidates import candidate_subset
from convnn_ref.config import ConvNNConfig
from convnn_ref.fast import engine, routes
from convnn_ref.fast.plan import TokenCall, default_memory_budget
from convnn_ref.fast.table_cache import position_plan
from convnn_ref.positions import Geometry
from convnn_ref.select import Neighbours
from convnn_ref.table import compute_position_table
from convnn_ref.validation import (
    check_candidate_index,
    check_config,
    check_feature_padding,
    check_generator,
    check_mask,
    check_memory_budget,
    check_probability,
    check_sequence_knobs,
    check_tensor,
    check_weight,
)

__all__ = ["Neighbours", "attention_neighbours", "convnn", "convnn_attention", "neighbours", "position_table"]


# ----------------------------------------------------------------------------- image input


def convnn(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    config: ConvNNConfig,
    *,
    generator: torch.Generator | None = None,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """ConvNN on image-like input.

    x ``(B, C_in, *S)`` with 1 to 3 spatial axes; weight ``(C_out, C_in'/groups, k)`` (None for
    ``kernel='sum'``), with ``C_in' = C_in + d`` when coordinates are aggregated; bias
    ``(C_out,)`` or None. Returns ``(B, C_out, *S_out)``, ``S_out`` from `resolve_geometry`.
    ``memory_budget``: bytes of score blocks per query chunk (None: the device's default).
    """
    check_config(config)
    engine.setting()  # an unknown CONVNN_SELECT_ENGINE is an error on every route
    x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
    check_generator(generator)
    budget = check_memory_budget(memory_budget) or default_memory_budget(x.device)
    geometry = _image_geometry(config, x)
    b, dtype = x.shape[0], x.dtype
    aggregated_coords = geometry.ndim if config.coord_encoding in ("aggregate", "both") else 0
    c_out = check_weight(weight, bias, x.shape[1] + aggregated_coords, config, x)
    if x.device.type == "meta":  # shapes only, as torch's meta kernels: nothing is scored or selected
        return x.new_empty(b, c_out, *geometry.out)
    if config.basis == "position":
        x = _with_coordinates(x, config, geometry)
        plan = position_plan(geometry, config, x.device, candidate_subset(config, geometry.spatial, x.device, generator))
        return routes.position_convnn(x, geometry, plan, weight, bias, config)
    wide = routes.COMPUTE_DTYPES.get(x.dtype)
    if wide is not None:  # half precision: scoring features (hybrid: f / std) built in float32 too
        x, weight, bias = (None if t is None else t.to(wide) for t in (x, weight, bias))  # type: ignore[assignment]
    call = _feature_call(x, config, geometry, generator, budget, weight, bias)
    y = routes.token_convnn(call)
    return y.reshape(b, y.shape[1], *geometry.out).to(dtype)


def neighbours(
    x: torch.Tensor,
    config: ConvNNConfig,
    *,
    generator: torch.Generator | None = None,
    memory_budget: int | None = None,
) -> Neighbours:
    """Steps 1 and 2 alone, for image-like x ``(B, C, *S)``: the selected neighbours of every
    query. Index values point into the padded grid's tokens (row-major)."""
    check_config(config)
    engine.setting()  # an unknown CONVNN_SELECT_ENGINE is an error on every route
    x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
    check_generator(generator)
    budget = check_memory_budget(memory_budget) or default_memory_budget(x.device)
    _refuse_meta(x, "x", "neighbours")
    geometry = _image_geometry(config, x)
    if config.basis == "position":
        plan = position_plan(geometry, config, x.device, candidate_subset(config, geometry.spatial, x.device, generator))
        return Neighbours(plan.index, plan.score.to(x.dtype), None)
    wide = routes.COMPUTE_DTYPES.get(x.dtype)
    nb = routes.token_neighbours(_feature_call(x if wide is None else x.to(wide), config, geometry, generator, budget))
    return Neighbours(nb.index, nb.score.to(x.dtype), nb.valid)


def scoring_features(x: torch.Tensor, config: ConvNNConfig, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The vectors the feature and hybrid scores of ``convnn(x, ..., config)`` are taken on:
    every token of the padded grid ``(B, N_padded, D)``, coordinate channels and the hybrid
    embedding included (before cosine's normalisation), in x's dtype."""
    check_config(config)
    engine.setting()  # an unknown CONVNN_SELECT_ENGINE is an error on every route
    x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
    if config.basis == "position":
        raise ValueError("scoring_features needs basis='feature' or 'hybrid', got basis='position'")
    geometry = _image_geometry(config, x)
    budget = default_memory_budget(x.device)
    return _feature_call(x, config, geometry, generator, budget).keys


def position_table(
    geometry: Geometry,
    config: ConvNNConfig,
    device: torch.device,
    cand_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The position-basis neighbour table: index ``(Nq, k)`` into the padded grid and the
    selected scores ``(Nq, k)`` float64, by the generic score-then-select (`table.py`).

    Data-independent, so cached (LRU, 64 entries) by geometry, the selection knobs and the
    device, unless the candidates are a random draw. cand_index: a candidate subset of the
    padded grid's tokens ``(M,)`` (see `candidates.candidate_subset`), or None for all.
    """
    check_config(config)
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry must be a Geometry (from resolve_geometry), got {type(geometry).__name__}")
    if config.basis != "position":
        raise ValueError(f"position_table needs basis='position', got basis={config.basis!r}")
    cand_index = check_candidate_index(cand_index, math.prod(geometry.padded))
    device = torch.device(device)
    if cand_index is not None:  # the caller's own subset: computed for it, never cached
        return compute_position_table(geometry, config, device, cand_index.to(device))
    plan = position_plan(geometry, config, device, candidate_subset(config, geometry.spatial, device, None))
    return plan.index, plan.score


def _refuse_meta(x: torch.Tensor, name: str, what: str) -> None:
    """The meta device holds shapes, not values: selections cannot be made there."""
    if x.device.type == "meta":
        raise NotImplementedError(f"{name} is on the meta device: {what} select by the values, which a meta tensor does not hold")


def _image_geometry(config: ConvNNConfig, x: torch.Tensor) -> Geometry:
    """The geometry of ``config`` for x ``(B, C, *S)``, its padding bounded by the input."""
    geometry = positions.resolve_geometry(config, tuple(x.shape[2:]))
    check_feature_padding(config, geometry.spatial, geometry.padding)
    return geometry


def _with_coordinates(x: torch.Tensor, config: ConvNNConfig, geometry: Geometry) -> torch.Tensor:
    """x ``(B, C, *S)``, with the coordinate channels appended when they are aggregated."""
    if config.coord_encoding not in ("aggregate", "both"):
        return x
    coords = positions.coordinate_channels(geometry.spatial, x.device, x.dtype)
    return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)


def _feature_call(
    x: torch.Tensor,
    config: ConvNNConfig,
    geometry: Geometry,
    generator: torch.Generator | None,
    budget: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> TokenCall:
    """Steps 1 and 2 of the feature and hybrid bases, prepared: token-major scoring features of
    the queries ``(B, Nq, D)`` and of every token of the padded grid ``(B, N, D)``, values
    ``(B, N, C')`` (without coordinate channels the features and the values share one view of
    the padded input), and the selection rule. The output is channels-first."""
    b, c = x.shape[:2]
    padded = positions.zero_pad(x, geometry.padding)
    tokens = padded.reshape(b, c, -1).transpose(1, 2)  # a view: gathers read the input in place
    coords = None
    if config.coord_encoding != "none":  # the unpadded grid's channels, zero at padded points
        grid = positions.coordinate_channels(geometry.spatial, x.device, x.dtype)
        grid = positions.zero_pad(grid[None], geometry.padding)[0]
        coords = grid.reshape(geometry.ndim, -1).T.expand(b, -1, -1)
    values = torch.cat([tokens, coords], dim=-1) if coords is not None and config.coord_encoding in ("aggregate", "both") else tokens
    f = torch.cat([tokens, coords], dim=-1) if coords is not None and config.coord_encoding in ("score", "both") else tokens
    if config.basis == "hybrid":
        u = positions.grid_coordinates(geometry, config.coordinates, x.device)
        f = scores.hybrid_embedding(f, u, config.hybrid_lambda)
    subset = geometry.out != geometry.padded  # strided or padded: the queries are some tokens
    query_index = positions.query_tokens(geometry, x.device) if subset or config.self_slot == "forced" else None
    queries = f[:, query_index] if subset else f
    own = query_index if config.self_slot == "forced" else None
    rule = select.selection_rule(
        config, f.shape[1], candidates=candidate_subset(config, geometry.spatial, x.device, generator), own=own
    )
    return TokenCall(queries, f, values, config, rule, budget, weight=weight, bias=bias, channels_first=True)


# ----------------------------------------------------------------------------- sequence input


def convnn_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: ConvNNConfig,
    *,
    allowed: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    memory_budget: int | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """ConvNN over sequences: queries select among keys by feature score, values aggregate.

    q ``(B, Nq, D)``, k ``(B, Nk, D)``, v ``(B, Nk, Dv)``; allowed: bool broadcastable to
    ``(B, Nq, Nk)``, True where key j may be a neighbour of query i (causal, key padding).
    A query with fewer than k allowed keys leaves slots empty (weight zero); one with none
    outputs the bias. Returns ``(B, Nq, C_out)`` (``C_out = Dv`` for ``kernel='sum'``).
    With ``similarity='scaled_dot'``, ``rho='softmax'``, ``kernel='sum'`` and ``k = Nk`` this
    is `F.scaled_dot_product_attention`; with ``k < Nk`` it is KVT attention. ``dropout_p``
    drops rho weights (the probabilities) with torch's global RNG, as PyTorch's attention does.
    """
    call = _attention_call(q, k, v, config, allowed, generator, memory_budget, weight, bias, dropout_p)
    if call.queries.shape[0] == 0 or call.queries.shape[1] == 0:  # as F.scaled_dot_product_attention: empty in, empty out
        c_out = call.values.shape[-1] if weight is None else weight.shape[0]
        return call.values.new_zeros(call.queries.shape[0], call.queries.shape[1], c_out)
    return routes.token_convnn(call)


def attention_neighbours(
    q: torch.Tensor,
    k: torch.Tensor,
    config: ConvNNConfig,
    *,
    allowed: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    memory_budget: int | None = None,
) -> Neighbours:
    """Steps 1 and 2 of `convnn_attention`: index ``(B, Nq, k)`` into the keys."""
    call = _attention_call(q, k, k, config, allowed, generator, memory_budget, with_weight=False)
    if call.queries.shape[0] == 0 or call.queries.shape[1] == 0:
        index = torch.zeros(*call.queries.shape[:2], call.rule.k, dtype=torch.int64, device=q.device)
        return Neighbours(index, call.queries.new_zeros(index.shape), None)
    return routes.token_neighbours(call)


def _attention_call(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    generator: torch.Generator | None,
    memory_budget: int | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    *,
    with_weight: bool = True,
) -> TokenCall:
    """Validate the sequence form's arguments; prepare its `TokenCall` (step 2's rule included).
    ``with_weight=False``: steps 1 and 2 alone (`attention_neighbours`), no weight to check."""
    dropout_p = check_probability(dropout_p, "dropout_p")
    check_config(config)
    engine.setting()  # an unknown CONVNN_SELECT_ENGINE is an error on every route
    q = check_tensor(q, "q", (3,), "(B, Nq, D)", allow_empty=True)
    k = check_tensor(k, "k", (3,), "(B, Nk, D)", allow_empty=True)
    v = check_tensor(v, "v", (3,), "(B, Nk, Dv)", allow_empty=True)
    check_generator(generator)
    budget = check_memory_budget(memory_budget) or default_memory_budget(q.device)
    _refuse_meta(q, "q", "convnn_attention and attention_neighbours")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}; move them to one device")
        if t.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but q has dtype {q.dtype}; cast them to one dtype")
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(f"q, k, v must share the batch size, got {q.shape[0]}, {k.shape[0]}, {v.shape[0]}")
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"q and k must share the feature size D, got {q.shape[2]} and {k.shape[2]}")
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape[1]} and {v.shape[1]}")
    if k.shape[1] == 0:
        raise ValueError(f"k must hold at least one key (Nk >= 1), got shape {tuple(k.shape)}")
    if q.shape[2] == 0 or v.shape[2] == 0:
        raise ValueError(f"q and v must have at least one feature (D >= 1, Dv >= 1), got D={q.shape[2]}, Dv={v.shape[2]}")
    if config.basis != "feature":
        raise NotImplementedError(f"convnn_attention scores features only; got basis={config.basis!r}")
    check_sequence_knobs(config)
    if config.self_slot == "forced" and q.shape[1] != k.shape[1]:
        raise ValueError(f"self_slot='forced' needs as many queries as keys, got Nq={q.shape[1]}, Nk={k.shape[1]}")
    allowed = check_mask(allowed, "allowed", (q.shape[0], q.shape[1], k.shape[1]), q.device)
    if allowed is not None:
        while allowed.dim() < 3:
            allowed = allowed[None]
    if with_weight:
        check_weight(weight, bias, v.shape[-1], config, q)
    own = torch.arange(q.shape[1], device=q.device) if config.self_slot == "forced" else None
    candidates = candidate_subset(config, (k.shape[1],), q.device, generator)
    rule = select.selection_rule(config, k.shape[1], candidates=candidates, own=own)
    return TokenCall(q, k, v, config, rule, budget, allowed=allowed, weight=weight, bias=bias, dropout_p=dropout_p)
