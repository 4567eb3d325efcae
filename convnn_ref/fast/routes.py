"""The routes: steps 1 to 3 composed per query chunk, within a memory budget.

Token routes (feature and hybrid bases, attention), for one `TokenCall`:

- gather route: per query chunk, order-equivalent scores (`ranking.rank_scores`), `select`,
  the k selected values gathered by index ``(B, chunk, k, C)``, the selected scores recomputed
  exactly with autograd, `aggregate.aggregate`. Only one chunk's neighbours exist at a time and
  backward never holds an ``N x N`` matrix.
- dense route (sum kernel with large k, attention): per query chunk, the rho weights of every
  candidate column ``W (B, chunk, M)``, zero off the selected set (`select.selected_mask`), then
  ``W @ V``: no ``(B, Nq, k, C)`` block. Chunks are checkpointed under autograd, so backward
  recomputes a chunk's scores instead of keeping all of them.

Position basis: `position_convnn` aggregates a position table, by shifted matrix products
(`shifted.py`) when the table has shift structure, else by gathering.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch
import torch.utils.checkpoint

from convnn_ref import aggregate, scores, select
from convnn_ref.config import ConvNNConfig
from convnn_ref.fast import engine
from convnn_ref.fast.plan import DENSE_SUM_FRACTION, TokenCall, block_sizes, chunk_size
from convnn_ref.fast.ranking import exact_where_nonfinite, gather_tokens, nonfinite_tokens, rank_keys, rank_scores
from convnn_ref.fast.shifted import channels_first_grid, shifted_aggregate
from convnn_ref.fast.table_cache import PositionPlan
from convnn_ref.positions import Geometry, zero_pad
from convnn_ref.select import Neighbours

# ----------------------------------------------------------------------------- token routes


#: Half-precision inputs are scored, selected and aggregated in float32, the output rounded back
#: (as PyTorch's attention does on the CPU): float16 scores overflow past 65504, and a softmax's
#: backward in half precision cancels against its own rounded output.
COMPUTE_DTYPES = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def token_convnn(call: TokenCall) -> torch.Tensor:
    """ConvNN on tokens: ``(B, Nq, C_out)``, or ``(B, C_out, Nq)`` with ``call.channels_first``.
    Takes the dense route for the sum kernel with large k, the gather route otherwise."""
    wide = _widened(call)
    if wide is not call:
        return token_convnn(wide).to(call.values.dtype)
    return dense_route(call) if _dense_applies(call) else gather_route(call)


def _widened(call: TokenCall) -> TokenCall:
    """``call`` with its tensors in the compute dtype (`COMPUTE_DTYPES`); ``call`` itself when
    its dtype computes as it is. Queries that are the keys stay one tensor."""
    wide = COMPUTE_DTYPES.get(call.values.dtype)
    if wide is None:
        return call
    keys = call.keys.to(wide)
    return dataclasses.replace(
        call,
        queries=keys if call.queries is call.keys else call.queries.to(wide),
        keys=keys,
        values=call.values.to(wide),
        weight=None if call.weight is None else call.weight.to(wide),
        bias=None if call.bias is None else call.bias.to(wide),
    )


def _dense_applies(call: TokenCall) -> bool:
    """The dense route computes the same function as the gather route when the kernel is the
    sum, the own tokens (forced self) are candidates, and every value it multiplies by a zero
    weight is finite (0 * inf is NaN): either every candidate is kept or the values are finite."""
    if call.config.kernel != "sum" or call.rule.k < max(2, DENSE_SUM_FRACTION * call.num_candidates):
        return False
    if call.rule.own is not None and call.rule.candidates is not None:
        return False  # an own token outside the candidates: the gather route handles it
    if _keeps_everything(call):
        return True
    return nonfinite_tokens(call.rule.columns(call.values)) is None


def _keeps_everything(call: TokenCall) -> bool:
    """No mask and k covering every candidate: the dense route selects nothing."""
    return call.allowed is None and call.rule.keeps_every_candidate(call.num_candidates)


def token_neighbours(call: TokenCall) -> Neighbours:
    """Steps 1 and 2 alone: the selection of every query, then the selected scores with autograd
    (in the input's dtype; selected in the compute dtype as `token_convnn` does)."""
    wide = _widened(call)
    if wide is not call:
        nb = token_neighbours(wide)
        return Neighbours(nb.index, nb.score.to(call.values.dtype), nb.valid)
    parts = list(_selections(call))
    index = torch.cat([nb.index for _, _, nb in parts], dim=1)
    valid = None
    if parts[0][2].valid is not None:
        valid = torch.cat([nb.valid for _, _, nb in parts], dim=1)  # type: ignore[misc]
        if bool(valid.all()):
            valid = None
    return Neighbours(index, _selected_scores(call.queries, call.keys, index, call.config), valid)


def gather_route(call: TokenCall) -> torch.Tensor:
    """Per query chunk: select, gather the k values by index ``(B, c, k, C)``, aggregate, write
    the chunk's output. Without autograd, the full kernel runs blocked (`_blocked_gather_route`)."""
    if _blocked_applies(call):
        return _blocked_gather_route(call)
    b, nq = call.queries.shape[:2]
    c_out = call.values.shape[-1] if call.weight is None else call.weight.shape[0]
    out = _new_output(call.values, b, nq, c_out, call.channels_first)
    config = call.config
    # One token-major copy of the values up front: every chunk then gathers whole contiguous rows
    # into a (B, c, k, C) block that the kernel's matrix product reads as it is (gathering from
    # the channels-first view would need a transposing copy of each block).
    values = call.values.contiguous()
    for start, stop, nb in _selections(call):
        gathered = aggregate.gather_neighbours(values, nb.index)
        score = None if config.rho == "ones" else _selected_scores(call.queries[:, start:stop], call.keys, nb.index, config)
        y = aggregate.aggregate(gathered, score, nb.valid, call.weight, call.bias, config, call.dropout_p)
        _write_chunk(out, y, start, stop, call.channels_first)
    return out


def _blocked_applies(call: TokenCall) -> bool:
    """The blocked aggregation computes the gather route's function when nothing needs autograd,
    the kernel is the full one, no mask can leave a slot empty and no dropout draws."""
    tensors = (call.queries, call.keys, call.values, call.weight, call.bias)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return not needs_grad and call.config.kernel == "full" and call.allowed is None and call.dropout_p == 0


def _blocked_gather_route(call: TokenCall) -> torch.Tensor:
    """The gather route's full kernel without autograd, in cache-sized blocks of one sample's
    queries, with two buffers reused for the whole call (no allocation per block, nothing for the
    heap to fragment): gather the block's k neighbours of every channel, weight them by rho in
    place, one matrix product with the weight, bias, write the block's output.

    Channels-first values (the image form's view of x) are gathered along the tokens of each
    channel into ``(C, k, n)`` (slot-major within a channel), which is what the Conv1d-layout
    weight ``(C_out, C * k)`` multiplies as it is, into ``(C_out, n)``: the output's own
    columns, no copy of x and no transpose of the output. Token-major values gather whole rows
    into ``(n, k * C)`` for the slot-major kernel matrix."""
    config, weight, bias = call.config, call.weight, call.bias
    assert weight is not None
    b, nq = call.queries.shape[:2]
    values = call.values
    t_count, c_in = values.shape[1:]
    k = call.rule.k
    c_out = weight.shape[0]
    channels_first = values.stride(1) == 1 and values.stride(2) == t_count and call.channels_first
    if not channels_first:
        values = values.contiguous()  # (B, T, C): whole rows per gathered token
    out = _new_output(values, b, nq, c_out, call.channels_first)
    rows = max(1, block_sizes().gather_block_bytes // (k * c_in * values.element_size()))
    gathered = values.new_empty(rows * k * c_in)
    y = values.new_empty(rows * c_out)
    wide = weight.reshape(c_out, c_in * k) if channels_first else aggregate.kernel_matrix(weight)
    for start, stop, nb in _selections(call):
        w = None
        if config.rho != "ones":
            score = _selected_scores(call.queries[:, start:stop], call.keys, nb.index, config)
            w = aggregate.rho_weights(score.to(values.dtype), None, config.rho, config.rho_scale)
        for i in range(b):
            for r0 in range(0, stop - start, rows):
                r1 = min(stop - start, r0 + rows)
                n, lo, hi = r1 - r0, start + r0, start + r1
                index = nb.index[i, r0:r1]  # (n, k)
                if channels_first:
                    g = gathered[: c_in * k * n].view(c_in, k * n)
                    torch.index_select(values[i].t(), 1, index.t().reshape(-1), out=g)  # (C, k*n), slot-major
                    if w is not None:
                        g.view(c_in, k, n).mul_(w[i, r0:r1].t())
                    block = torch.mm(wide, g.view(c_in * k, n), out=out[i, :, lo:hi])
                    if bias is not None:
                        block.add_(bias[:, None])
                    continue
                g = gathered[: n * k * c_in].view(n * k, c_in)
                torch.index_select(values[i], 0, index.reshape(-1), out=g)
                if w is not None:
                    g.view(n, k, c_in).mul_(w[i, r0:r1, :, None])
                yb = torch.mm(g.view(n, k * c_in), wide, out=y[: n * c_out].view(n, c_out))
                if bias is not None:
                    yb.add_(bias)
                if call.channels_first:
                    out[i, :, lo:hi] = yb.t()
                else:
                    out[i, lo:hi] = yb
    return out


def dense_route(call: TokenCall) -> torch.Tensor:
    """Sum kernel as ``W @ V`` per query chunk, W ``(B, chunk, M)`` holding rho on the selected
    columns and 0 elsewhere; checkpointed per chunk when autograd is on."""
    config, rule = call.config, call.rule
    b, nq = call.queries.shape[:2]
    keys, vals = rule.columns(call.keys), rule.columns(call.values)
    m = keys.shape[1]
    allowed = None if call.allowed is None else rule.columns(call.allowed, -1).expand(b, nq, m)
    in_columns = rule.in_columns()
    kn = scores.prepare_features(keys, config.similarity)  # unit vectors for cosine
    qn = kn if call.queries is keys else scores.prepare_features(call.queries, config.similarity)
    keep_all = _keeps_everything(call)  # nothing to select: every candidate of every query is kept
    bad_q, bad_k = nonfinite_tokens(call.queries.detach()), nonfinite_tokens(keys.detach())
    chunk = chunk_size(b, m, qn.element_size(), call.budget)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (qn, kn, vals))

    def run_chunk(qn_c: torch.Tensor, kn_: torch.Tensor, vals_: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        keep = None
        s = _scaled_query_scores(qn_c, kn_, config) if keep_all else scores.pairwise_feature_scores(qn_c, kn_, config.similarity, config.scale)
        if bad_q is not None or bad_k is not None:
            rows = None if bad_q is None else bad_q[:, start:stop]
            s = exact_where_nonfinite(s, call.queries[:, start:stop], keys, (rows, bad_k), config, call.budget)
        if not keep_all:
            part = None if allowed is None else allowed[:, start:stop]
            keep = select.selected_mask(s.detach(), in_columns, slice(start, stop), allowed=part)
        w = aggregate.rho_weights(s, keep, config.rho, config.rho_scale)
        if call.dropout_p > 0:
            w = torch.nn.functional.dropout(w, call.dropout_p)
        return w @ vals_

    out = _new_output(vals, b, nq, vals.shape[-1], call.channels_first)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        if need_grad:
            part = torch.utils.checkpoint.checkpoint(run_chunk, qn[:, start:stop], kn, vals, start, stop, use_reentrant=False)
        else:
            part = run_chunk(qn[:, start:stop], kn, vals, start, stop)
        _write_chunk(out, part if call.bias is None else part + call.bias, start, stop, call.channels_first)
    return out


def _scaled_query_scores(qn: torch.Tensor, kn: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
    """`scores.pairwise_feature_scores` for a block that selects nothing: scaled_dot scales the
    smaller query block instead of the score block (one pass fewer; ties play no part here)."""
    if config.similarity == "scaled_dot":
        scale = scores.default_scale(qn.shape[-1]) if config.scale is None else config.scale
        return (qn * scale) @ kn.transpose(-1, -2)
    return scores.pairwise_feature_scores(qn, kn, config.similarity, config.scale)


def _selections(call: TokenCall) -> Iterator[tuple[int, int, Neighbours]]:
    """Selection, one query chunk at a time, without autograd: yields ``(start, stop,
    neighbours)`` with index ``(B, stop-start, k)`` into the token list. The selection engine
    (`engine`, faiss) selects every query at once where it applies; otherwise scores come from
    `rank_scores` (same order, fewer passes) per chunk within the budget."""
    config, rule = call.config, call.rule
    b, nq = call.queries.shape[:2]
    keys = rule.columns(call.keys).detach()
    m = keys.shape[1]
    allowed = None if call.allowed is None else rule.columns(call.allowed, -1).expand(b, nq, m)
    with torch.no_grad():
        ranked, stats = rank_keys(keys, config.similarity)
        bad_q, bad_k = nonfinite_tokens(call.queries.detach()), nonfinite_tokens(keys)
        everything = None
        if bad_q is None and bad_k is None and engine.wanted(call.queries, rule, m, allowed is not None):
            everything = engine.select_all(call.queries.detach(), ranked, stats, rule, config.similarity, call.budget)
    if everything is not None:
        # Selected already: chunks only bound the aggregation's gathered block (B, chunk, k, C).
        chunk = chunk_size(b, rule.k * call.values.shape[-1], call.values.element_size(), call.budget)
        for start in range(0, nq, chunk):
            stop = min(nq, start + chunk)
            yield start, stop, Neighbours(everything.index[:, start:stop], everything.score[:, start:stop], None)
        return
    finite = bad_q is None and bad_k is None
    topk = engine.heap_topk if finite and engine.heap_wanted(ranked.dtype, ranked.device, rule) else None
    chunk = chunk_size(b, m, call.queries.element_size(), call.budget)
    # One score buffer for every chunk: a fresh block per chunk, freed between the small tensors
    # autograd keeps, fragments the heap until the process holds gigabytes (docs/benchmarks.md).
    buffer = ranked.new_empty(b * min(chunk, nq) * m)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        with torch.no_grad():
            block = buffer[: b * (stop - start) * m].view(b, stop - start, m)
            s = rank_scores(call.queries[:, start:stop].detach(), ranked, stats, config.similarity, out=block)
            if bad_q is not None or bad_k is not None:
                rows = None if bad_q is None else bad_q[:, start:stop]
                s = exact_where_nonfinite(s, call.queries[:, start:stop], keys, (rows, bad_k), config, call.budget)
            part = None if allowed is None else allowed[:, start:stop]
            nb = select.select(s, rule, slice(start, stop), allowed=part, topk=topk)
        yield start, stop, nb


def _selected_scores(queries: torch.Tensor, keys: torch.Tensor, index: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
    """Differentiable scores of the selected neighbours: queries ``(B, c, D)``, every token's
    features ``(B, T, D)``, index ``(B, c, k)`` -> ``(B, c, k)``."""
    return scores.paired_feature_scores(queries[:, :, None], gather_tokens(keys, index), config.similarity, config.scale)


def _new_output(like: torch.Tensor, b: int, nq: int, c_out: int, channels_first: bool) -> torch.Tensor:
    shape = (b, c_out, nq) if channels_first else (b, nq, c_out)
    return like.new_empty(shape)


def _write_chunk(out: torch.Tensor, y: torch.Tensor, start: int, stop: int, channels_first: bool) -> None:
    """Write one chunk's ``(B, c, C_out)`` output into the preallocated output."""
    if channels_first:
        out[:, :, start:stop] = y.transpose(1, 2)
    else:
        out[:, start:stop] = y


# ----------------------------------------------------------------------------- position basis


def position_convnn(
    x: torch.Tensor,
    geometry: Geometry,
    plan: PositionPlan,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    config: ConvNNConfig,
) -> torch.Tensor:
    """Step 3 of the position basis on a table: x ``(B, C, *S)`` (coordinate channels included)
    -> ``(B, C_out, *S_out)``. The shifted route when the table has shift structure and rho is
    'ones'; otherwise the neighbours are gathered from the zero-padded grid's tokens."""
    b, c = x.shape[:2]
    if plan.shifts is not None and config.rho == "ones" and weight is not None:
        x2 = channels_first_grid(x, geometry.padding)
        y = shifted_aggregate(x2, b, plan.shifts, weight, bias, config.groups)
        return y.reshape(b, -1, *geometry.out)
    tokens = zero_pad(x, geometry.padding).reshape(b, c, -1).transpose(1, 2).contiguous()
    gathered = aggregate.gather_neighbours(tokens, plan.index)
    y = aggregate.aggregate(gathered, plan.score, None, weight, bias, config)
    return y.transpose(1, 2).reshape(b, -1, *geometry.out)
