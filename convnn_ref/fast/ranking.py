"""Fast-path tricks of steps 1 and 3 that change no result: order-equivalent selection scores
and the in-place gather."""

from __future__ import annotations

import torch

from convnn_ref import aggregate, scores
from convnn_ref.config import ConvNNConfig


def rank_keys(keys: torch.Tensor, similarity: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keys as `rank_scores` consumes them, and per-key statistics: unit keys for cosine (so
    that keys along one direction tie exactly, as the similarity says), ``|k|^2`` for
    euclidean. keys ``(B, M, D)`` -> ``((B, M, D), (B, M) or None)``."""
    if similarity == "cosine":
        # scores.prepare_features' unit vectors, with the norms summed batch by batch: on the
        # channels-first view the image routes pass, torch's norm is ~10x slower than this.
        return keys / row_norms(keys).clamp_min(scores.NORM_EPS)[..., None], None
    if similarity == "euclidean":
        return keys, keys.square().sum(-1)
    return keys, None



def row_norms(t: torch.Tensor) -> torch.Tensor:
    """``|t|`` along the last axis, ``(B, N, D) -> (B, N)``, one sample at a time (a temporary of
    one sample's size), whatever the layout of ``t``."""
    out = t.new_empty(t.shape[:-1])
    for i in range(t.shape[0]):
        torch.sqrt(t[i].square().sum(-1), out=out[i])
    return out


def rank_scores(
    q: torch.Tensor, keys: torch.Tensor, stats: torch.Tensor | None, similarity: str, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Scores that rank every row's candidates as the similarity does, with fewer passes: the
    factors and terms constant along a row (``1/|q|``, ``|q|^2``, a positive scale) are left
    out. q ``(B, c, D)``, keys and stats from `rank_keys` -> ``(B, c, M)``, written into ``out``
    when given (a reused buffer: no-grad only). For selection only;
    `scores.paired_feature_scores` recomputes the selected scores exactly."""
    dots = torch.matmul(q, keys.transpose(-1, -2), out=out) if out is not None else q @ keys.transpose(-1, -2)
    if similarity in ("cosine", "dot", "scaled_dot"):
        return dots
    if similarity == "euclidean":
        assert stats is not None
        return dots.mul_(2.0).sub_(stats[:, None, :])
    raise ValueError(f"similarity={similarity!r} is not one of ('cosine', 'euclidean', 'dot', 'scaled_dot')")


def gather_tokens(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`aggregate.gather_neighbours`, reading a channels-first tensor seen token-major
    (``x.reshape(B, C, M).transpose(1, 2)``) in place along M, so the caller never copies the
    whole input into a token-major layout. values ``(B, M, C)``, index ``(B, Nq, k)`` or
    ``(Nq, k)`` -> ``(B, Nq, k, C)``."""
    b, m, c = values.shape
    nq, k = index.shape[-2:]
    if values.stride(1) == 1 and values.stride(2) == m and not values.is_contiguous():
        flat = index.reshape(-1 if index.dim() == 3 else 1, 1, nq * k).expand(b, c, nq * k)
        picked = torch.gather(values.transpose(1, 2), 2, flat)  # (B, C, Nq*k)
        return picked.reshape(b, c, nq, k).permute(0, 2, 3, 1)
    return aggregate.gather_neighbours(values, index)


def nonfinite_tokens(features: torch.Tensor) -> torch.Tensor | None:
    """``(B, N)`` bool: the tokens of ``features`` ``(B, N, D)`` holding a NaN or an infinity;
    None when every feature is finite (the common case: one pass, nothing else to do)."""
    # A finite sum proves every term finite (a NaN or an infinity makes it NaN or inf), in one
    # reduction; a sum that overflows from finite terms only costs the exact check below.
    if bool(torch.isfinite(features.sum())):
        return None
    nonfinite = ~torch.isfinite(features).all(dim=-1)
    return nonfinite if bool(nonfinite.any()) else None


def exact_where_nonfinite(
    block: torch.Tensor,
    queries: torch.Tensor,
    keys: torch.Tensor,
    bad: tuple[torch.Tensor | None, torch.Tensor | None],
    config: ConvNNConfig,
    budget: int,
) -> torch.Tensor:
    """``block`` ``(B, c, M)`` of fast scores (rank scores, or expanded euclidean) with the rows
    of non-finite queries and the columns of non-finite keys recomputed by the formula itself
    (`scores.paired_feature_scores`), so that NaN, +inf and -inf land where the formula puts
    them. Such a score is never finite, so the block still ranks like the exact scores; its
    finite entries (and autograd's graph through them) are the block's own.
    queries ``(B, c, D)``, keys ``(B, M, D)``; bad: ``(queries (B, c), keys (B, M))`` from
    `nonfinite_tokens`, each None when all finite."""
    with torch.no_grad():
        exact = block.detach().clone()
        queries, keys = queries.detach(), keys.detach()
        for axis, flags in enumerate(bad):
            if flags is None or not bool(flags.any()):
                continue
            b_idx, t_idx = flags.nonzero(as_tuple=True)
            other = keys if axis == 0 else queries  # a query row spans the keys, a key column the queries
            step = max(1, budget // max(1, other.shape[1] * other.shape[2] * other.element_size()))
            for s in range(0, b_idx.shape[0], step):
                b_s, t_s = b_idx[s : s + step], t_idx[s : s + step]
                if axis == 0:
                    q, k = queries[b_s, t_s][:, None, :], keys[b_s]
                    exact[b_s, t_s] = scores.paired_feature_scores(q, k, config.similarity, config.scale).to(block.dtype)
                else:
                    q, k = queries[b_s], keys[b_s, t_s][:, None, :]
                    exact[b_s, :, t_s] = scores.paired_feature_scores(q, k, config.similarity, config.scale).to(block.dtype)
    return torch.where(torch.isfinite(exact), block, exact)
