"""The reference path: score, select, aggregate (SPEC §1), composed for image-like input
``(B, C, *S)`` (`convnn`) and for sequences of queries, keys and values (`convnn_attention`).

Phases, one function each:
  1. `neighbours` / `attention_neighbours`: who is selected, in which slot, with which score.
     Position basis: a data-independent table, computed once per shape by the generic top-k
     and cached (`table.py`); with shift structure it is aggregated by shifted matrix
     products (`shifted.py`). Feature and hybrid bases: query-chunked scores under a
     memory budget, a no-grad top-k, then the selected scores recomputed with autograd from
     the gathered neighbours (so backward never holds an ``N x N`` matrix).
  2. `rho_weights` and `apply_kernel` (in `aggregate.py`) on neighbours gathered by index.
  The sum kernel with large k (attention) takes a dense, chunked, checkpointed route instead:
  ``softmax`` over the kept scores times V, never materialising ``(B, Nq, k, C)``.

The naive oracle in `naive.py` is written independently of this file; the suite holds the two
equal. Semantics: see `ConvNNConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.utils.checkpoint

from convnn_ref import positions, scores, select
from convnn_ref.aggregate import apply_kernel, gather_neighbours, rho_weights
from convnn_ref.candidates import candidate_subset, self_columns
from convnn_ref.config import ConvNNConfig
from convnn_ref.positions import Geometry
from convnn_ref.shifted import channels_first_grid, shifted_aggregate
from convnn_ref.table import position_plan, position_table
from convnn_ref.validation import check_k, check_mask, check_tensor, check_weight

#: Bytes the score blocks of one query chunk may take (two ``B * chunk * M`` blocks). 32 MiB
#: keeps a 128x128 map with B = 8 well within a few GiB in every mode, and the peak memory of
#: feature mode within a small multiple of its output.
DEFAULT_MEMORY_BUDGET = 32 * 2**20

#: On CUDA, kernel launches rather than cache misses dominate small chunks: 1 GiB.
DEFAULT_CUDA_MEMORY_BUDGET = 2**30

#: The sum kernel switches to the dense route when k is at least this fraction of the
#: candidates (gathering k rows then costs more than one matrix product over all of them).
DENSE_SUM_FRACTION = 1 / 16



def default_memory_budget(device: torch.device) -> int:
    """Bytes of score blocks per query chunk when the caller sets none: 32 MiB on the CPU
    (cache-sized chunks, peak memory a small multiple of the output), 1 GiB on CUDA."""
    return DEFAULT_CUDA_MEMORY_BUDGET if device.type == "cuda" else DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class Neighbours:
    """The outcome of steps 1 and 2.

    index ``(B, Nq, k)``, or ``(Nq, k)`` when shared by the batch (position basis): int64 into
    the candidate tokens (the padded grid, row-major, in the position basis).
    score ``(B, Nq, k)`` or ``(Nq, k)``: the selected scores (autograd flows through them for
    feature and hybrid scores). valid: bool like ``index``, or None when every slot is filled.
    """

    index: torch.Tensor
    score: torch.Tensor
    valid: torch.Tensor | None


# ----------------------------------------------------------------------------- public API


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
    """
    x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
    geometry = positions.resolve_geometry(config, tuple(x.shape[2:]))
    budget = memory_budget or default_memory_budget(x.device)
    b = x.shape[0]
    if config.basis == "position":
        x = _with_coordinates(x, config, geometry)
        c_out = check_weight(weight, bias, x.shape[1], config, x)
        cand_index = candidate_subset(config, geometry.spatial, x.device, generator)
        plan = position_plan(geometry, config, x.device, cand_index)
        if plan.shifts is not None and config.rho == "ones" and weight is not None:
            x2 = channels_first_grid(x, geometry.padding)
            y = shifted_aggregate(x2, b, plan.shifts, weight, bias, config.groups)
            return y.reshape(b, c_out, *geometry.out)
        nb = Neighbours(plan.index, plan.score.to(x.dtype), None)
        y = _aggregate(_padded_tokens(x, geometry), nb, weight, bias, config)
        return y.transpose(1, 2).reshape(b, c_out, *geometry.out)
    qf, kf, values, query_index, cand_index = _feature_inputs(x, config, geometry, generator)
    c_out = check_weight(weight, bias, values.shape[-1], config, x)
    y = _token_convnn(qf, kf, values, config, None, query_index, cand_index, weight, bias, budget, channels_first=True)
    return y.reshape(b, c_out, *geometry.out)


def neighbours(
    x: torch.Tensor,
    config: ConvNNConfig,
    *,
    generator: torch.Generator | None = None,
    memory_budget: int | None = None,
) -> Neighbours:
    """Steps 1 and 2 alone, for image-like x ``(B, C, *S)``: the selected neighbours of every
    query. Index values point into the padded grid's tokens (row-major)."""
    x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
    geometry = positions.resolve_geometry(config, tuple(x.shape[2:]))
    budget = memory_budget or default_memory_budget(x.device)
    if config.basis == "position":
        cand_index = candidate_subset(config, geometry.spatial, x.device, generator)
        index, score = position_table(geometry, config, x.device, cand_index)
        return Neighbours(index, score.to(x.dtype), None)
    qf, kf, _, query_index, cand_index = _feature_inputs(x, config, geometry, generator)
    return _feature_neighbours(qf, kf, config, None, query_index, cand_index, budget)


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
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p}")
    q, k, v, allowed = _check_attention(q, k, v, config, allowed)
    check_weight(weight, bias, v.shape[-1], config, q)
    cand_index = candidate_subset(config, (k.shape[1],), q.device, generator)
    query_index = torch.arange(q.shape[1], device=q.device) if config.self_slot == "forced" else None
    budget = memory_budget or default_memory_budget(q.device)
    return _token_convnn(q, k, v, config, allowed, query_index, cand_index, weight, bias, budget, dropout_p)


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
    q, k, _, allowed = _check_attention(q, k, k, config, allowed)
    cand_index = candidate_subset(config, (k.shape[1],), q.device, generator)
    query_index = torch.arange(q.shape[1], device=q.device) if config.self_slot == "forced" else None
    return _feature_neighbours(q, k, config, allowed, query_index, cand_index, memory_budget or default_memory_budget(q.device))


# ------------------------------------------------------------ feature and hybrid bases


def _feature_inputs(
    x: torch.Tensor, config: ConvNNConfig, geometry: Geometry, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Token-major inputs of the feature and hybrid bases: scoring features of the queries
    ``(B, Nq, D)`` and of every token ``(B, N, D)``, values ``(B, N, C')``, the queries' token
    indices ``(Nq,)`` (None at stride 1 without forced self) and the candidate subset ``(M,)``
    or None. Without coordinate channels the features and the values share one copy of x."""
    b, c = x.shape[:2]
    tokens = x.reshape(b, c, -1).transpose(1, 2)  # a view: gathers read x in place
    coords = None
    if config.coord_encoding != "none":
        grid = positions.coordinate_channels(geometry.spatial, x.device, x.dtype)
        coords = grid.reshape(geometry.ndim, -1).T.expand(b, -1, -1)
    values = torch.cat([tokens, coords], dim=-1) if coords is not None and config.coord_encoding in ("aggregate", "both") else tokens
    f = torch.cat([tokens, coords], dim=-1) if coords is not None and config.coord_encoding in ("score", "both") else tokens
    if config.basis == "hybrid":
        u = positions.to_coordinates(positions.grid_indices(geometry.spatial, x.device), geometry, config.coordinates)
        f = scores.hybrid_embedding(f, u, config.hybrid_lambda)
    strided = geometry.out != geometry.spatial
    query_index = None
    if strided or config.self_slot == "forced":
        query_index = positions.flat_index(positions.query_origins(geometry, x.device), geometry.spatial)
    cand_index = candidate_subset(config, geometry.spatial, x.device, generator)
    queries = f[:, query_index] if strided else f
    return queries, f, values, query_index, cand_index


def _chunk_size(b: int, m: int, element_size: int, budget: int) -> int:
    """Queries per chunk so that two ``(B, chunk, M)`` score blocks fit the budget."""
    return max(1, budget // max(1, b * m * element_size * 2))


def _prepare_tokens(
    config: ConvNNConfig,
    kf: torch.Tensor,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    nq: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int]:
    """Restrict keys and mask to the candidate subset; broadcast the mask to ``(B, Nq, M)``;
    check k. Returns (keys, mask, self columns or None, number of slots to select)."""
    b = kf.shape[0]
    if cand_index is not None:
        kf = kf[:, cand_index]
        if allowed is not None:
            allowed = allowed[..., cand_index]
    m = kf.shape[1]
    if allowed is not None:
        allowed = allowed.expand(b, nq, m)
    forced = config.self_slot == "forced"
    if forced:
        if query_index is None:
            query_index = torch.arange(nq, device=kf.device)
        self_cols = self_columns(query_index, cand_index, m)
        assert self_cols is not None
        others = m - int(bool((self_cols >= 0).any()))
        check_k(config.k - 1, others, "candidates besides the query itself")
        return kf, allowed, self_cols, config.k - 1
    check_k(config.k, m, "candidates" if cand_index is None else f"{config.candidates} candidates")
    return kf, allowed, None, config.k


def _selected_chunks(
    qf: torch.Tensor,
    kf: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    budget: int,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor | None]]:
    """Selection, one query chunk at a time, without autograd: yields ``(start, stop, index,
    valid)`` with index ``(B, stop-start, k)`` into the token list and valid the same shape
    (None when every slot is filled). Scores come from `rank_scores` (same order, fewer passes)."""
    b, nq = qf.shape[:2]
    keys, allowed, self_cols, k_sel = _prepare_tokens(config, kf, allowed, query_index, cand_index, nq)
    with torch.no_grad():
        keys, stats = scores.rank_keys(keys.detach(), config.similarity)
    chunk = _chunk_size(b, keys.shape[1], qf.element_size(), budget)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        with torch.no_grad():
            s = scores.rank_scores(qf[:, start:stop].detach(), keys, stats, config.similarity)
            if allowed is not None:
                s = s.masked_fill_(~allowed[:, start:stop], float("-inf"))
            if self_cols is not None:
                cols = self_cols[start:stop]
                rows = torch.arange(stop - start, device=s.device)[cols >= 0]
                s[:, rows, cols[cols >= 0]] = float("-inf")
            if k_sel > 0:
                v, index = select.topk_lowest_index(s, k_sel)
            else:
                v, index = s[..., :0], torch.zeros_like(s[..., :0], dtype=torch.int64)
            valid = v > float("-inf") if allowed is not None else None
            if cand_index is not None:
                index = cand_index[index]
            if self_cols is not None:
                own = (torch.arange(start, stop, device=s.device) if query_index is None else query_index[start:stop])
                index = torch.cat([own.expand(b, -1)[..., None], index], dim=-1)
                if valid is not None:
                    valid = torch.cat([valid.new_ones((*valid.shape[:-1], 1)), valid], dim=-1)
        yield start, stop, index, valid


def _selected_scores(qf: torch.Tensor, kf: torch.Tensor, index: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
    """Differentiable scores of the selected neighbours: queries ``(B, c, D)``, every token's
    features ``(B, N, D)``, index ``(B, c, k)`` -> ``(B, c, k)``."""
    return scores.paired_feature_scores(qf[:, :, None], gather_neighbours(kf, index), config.similarity, config.scale)


def _feature_neighbours(
    qf: torch.Tensor,
    kf: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    budget: int,
) -> Neighbours:
    """Selection of every query, then the selected scores with autograd."""
    parts = list(_selected_chunks(qf, kf, config, allowed, query_index, cand_index, budget))
    index = torch.cat([p[2] for p in parts], dim=1)
    valid = None if parts[0][3] is None else torch.cat([p[3] for p in parts], dim=1)  # type: ignore[misc]
    if valid is not None and bool(valid.all()):
        valid = None
    return Neighbours(index, _selected_scores(qf, kf, index, config), valid)


def _token_convnn(
    qf: torch.Tensor,
    kf: torch.Tensor,
    values: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    budget: int,
    dropout_p: float = 0.0,
    channels_first: bool = False,
) -> torch.Tensor:
    """Feature/hybrid ConvNN on tokens: queries ``(B, Nq, D)``, keys ``(B, N, D)``, values
    ``(B, N, C)`` -> ``(B, Nq, C_out)``, or ``(B, C_out, Nq)`` with ``channels_first``. Picks
    the gather route or, for the sum kernel with large k, the dense route."""
    m = kf.shape[1] if cand_index is None else cand_index.shape[0]
    own_outside = config.self_slot == "forced" and cand_index is not None  # gather route handles it
    if config.kernel == "sum" and config.k >= max(2, DENSE_SUM_FRACTION * m) and not own_outside:
        return _dense_sum(qf, kf, values, config, allowed, query_index, cand_index, bias, budget, dropout_p, channels_first)
    return _gather_route(qf, kf, values, config, allowed, query_index, cand_index, weight, bias, budget, dropout_p, channels_first)


def _gather_route(
    qf: torch.Tensor,
    kf: torch.Tensor,
    values: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    budget: int,
    dropout_p: float,
    channels_first: bool,
) -> torch.Tensor:
    """Per query chunk: select, gather the k values by index ``(B, c, k, C)``, weight by rho,
    apply the kernel, write the chunk's output. Only one chunk's neighbours exist at a time."""
    b, nq = qf.shape[:2]
    c_out = values.shape[-1] if weight is None else weight.shape[0]
    out = _new_output(values, b, nq, c_out, channels_first)
    for start, stop, index, valid in _selected_chunks(qf, kf, config, allowed, query_index, cand_index, budget):
        gathered = gather_neighbours(values, index)
        w = None
        if config.rho != "ones":
            s = _selected_scores(qf[:, start:stop], kf, index, config).to(values.dtype)
            w = rho_weights(s, valid, config.rho, config.rho_scale)
        elif valid is not None:
            w = valid.to(values.dtype)
        if dropout_p > 0:
            w = torch.nn.functional.dropout(torch.ones_like(index, dtype=values.dtype) if w is None else w, dropout_p)
        if w is not None:
            gathered = gathered * w[..., None]
        _write_chunk(out, apply_kernel(gathered, weight, bias, config.kernel, config.groups), start, stop, channels_first)
    return out


def _new_output(like: torch.Tensor, b: int, nq: int, c_out: int, channels_first: bool) -> torch.Tensor:
    shape = (b, c_out, nq) if channels_first else (b, nq, c_out)
    return like.new_empty(shape)


def _write_chunk(out: torch.Tensor, y: torch.Tensor, start: int, stop: int, channels_first: bool) -> None:
    """Write one chunk's ``(B, c, C_out)`` output into the preallocated output."""
    if channels_first:
        out[:, :, start:stop] = y.transpose(1, 2)
    else:
        out[:, start:stop] = y


def _aggregate(
    values: torch.Tensor,
    nb: Neighbours,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    config: ConvNNConfig,
) -> torch.Tensor:
    """values ``(B, M, C)`` gathered by ``nb.index``, weighted by rho, through the kernel."""
    gathered = gather_neighbours(values, nb.index)
    if config.rho != "ones" or nb.valid is not None:
        w = rho_weights(nb.score.to(values.dtype), nb.valid, config.rho, config.rho_scale)
        gathered = gathered * w[..., None]
    return apply_kernel(gathered, weight, bias, config.kernel, config.groups)


def _dense_sum(
    qf: torch.Tensor,
    kf: torch.Tensor,
    values: torch.Tensor,
    config: ConvNNConfig,
    allowed: torch.Tensor | None,
    query_index: torch.Tensor | None,
    cand_index: torch.Tensor | None,
    bias: torch.Tensor | None,
    budget: int,
    dropout_p: float = 0.0,
    channels_first: bool = False,
) -> torch.Tensor:
    """Sum kernel as ``W @ V`` per query chunk, W ``(B, chunk, M)`` holding rho on the kept
    entries and 0 elsewhere. Each chunk is checkpointed when autograd is on, so backward
    recomputes its scores instead of keeping all of them."""
    b, nq = qf.shape[:2]
    kf_c, allowed, self_cols, k_sel = _prepare_tokens(config, kf, allowed, query_index, cand_index, nq)
    vals = values if cand_index is None else values[:, cand_index]
    kn = scores.prepare_features(kf_c, config.similarity)  # unit vectors for cosine
    qn = kn if qf is kf_c else scores.prepare_features(qf, config.similarity)
    m = kn.shape[1]
    forced = self_cols is not None
    chunk = _chunk_size(b, m, qn.element_size(), budget)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (qn, kn, vals))

    def run_chunk(qn_c: torch.Tensor, kn_: torch.Tensor, vals_: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        dense = allowed is None and not forced and k_sel >= m  # every candidate kept: no selection
        s = scores.pairwise_feature_scores(qn_c, kn_, config.similarity, config.scale, scale_queries=dense)
        if dense:
            if config.rho == "softmax":
                w = torch.softmax(s if config.rho_scale == 1.0 else config.rho_scale * s, dim=-1)
            elif config.rho == "ones":
                w = torch.ones_like(s)
            else:
                w = s
            return (torch.nn.functional.dropout(w, dropout_p) if dropout_p > 0 else w) @ vals_
        masked = s if allowed is None else s.masked_fill(~allowed[:, start:stop], float("-inf"))
        with torch.no_grad():
            sel = masked.detach()
            if forced:
                assert self_cols is not None
                rows = torch.arange(stop - start, device=s.device)
                sel = sel.clone()
                sel[:, rows, self_cols[start:stop]] = float("-inf")
            if k_sel >= m:
                keep = sel > float("-inf")
            else:
                v, i = select.topk_lowest_index(sel, k_sel)
                keep = torch.zeros_like(sel, dtype=torch.bool).scatter_(-1, i, v > float("-inf"))
            if self_cols is not None:
                keep[:, rows, self_cols[start:stop]] = True
        if config.rho == "softmax":
            w = torch.softmax((config.rho_scale * s).masked_fill(~keep, float("-inf")), dim=-1)
            w = w.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)
        elif config.rho == "ones":
            w = keep.to(s.dtype)
        else:
            w = s.masked_fill(~keep, 0.0)
        if dropout_p > 0:
            w = torch.nn.functional.dropout(w, dropout_p)
        return w @ vals_

    out = _new_output(vals, b, nq, vals.shape[-1], channels_first)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        if need_grad:
            part = torch.utils.checkpoint.checkpoint(run_chunk, qn[:, start:stop], kn, vals, start, stop, use_reentrant=False)
        else:
            part = run_chunk(qn[:, start:stop], kn, vals, start, stop)
        _write_chunk(out, part if bias is None else part + bias, start, stop, channels_first)
    return out


# ------------------------------------------------------------------------ input helpers


def _with_coordinates(x: torch.Tensor, config: ConvNNConfig, geometry: Geometry) -> torch.Tensor:
    """x ``(B, C, *S)``, with the coordinate channels appended when they are aggregated."""
    if config.coord_encoding not in ("aggregate", "both"):
        return x
    coords = positions.coordinate_channels(geometry.spatial, x.device, x.dtype)
    return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)


def _padded_tokens(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Token-major values ``(B, M, C)`` over the zero-padded candidate grid (contiguous)."""
    b, c = x.shape[:2]
    if geometry.has_padding:
        pad: list[int] = []
        for lo, hi in reversed(geometry.padding):
            pad += [lo, hi]
        x = torch.nn.functional.pad(x, pad)
    return x.reshape(b, c, -1).transpose(1, 2).contiguous()


def _check_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ConvNNConfig, allowed: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    q = check_tensor(q, "q", (3,), "(B, Nq, D)")
    k = check_tensor(k, "k", (3,), "(B, Nk, D)")
    v = check_tensor(v, "v", (3,), "(B, Nk, Dv)")
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
    if config.basis != "feature":
        raise NotImplementedError(f"convnn_attention scores features only; got basis={config.basis!r}")
    if config.self_slot == "forced" and q.shape[1] != k.shape[1]:
        raise ValueError(f"self_slot='forced' needs as many queries as keys, got Nq={q.shape[1]}, Nk={k.shape[1]}")
    allowed = check_mask(allowed, "allowed", (q.shape[0], q.shape[1], k.shape[1]), q.device)
    if allowed is not None:
        while allowed.dim() < 3:
            allowed = allowed[None]
    return q, k, v, allowed
