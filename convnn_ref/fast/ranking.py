"""Fast-path tricks of steps 1 and 3 that change no result: order-equivalent selection scores
and the in-place gather."""

from __future__ import annotations

import torch

from convnn_ref import aggregate, scores


def rank_keys(keys: torch.Tensor, similarity: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keys as `rank_scores` consumes them, and per-key statistics: unit keys for cosine (so
    that keys along one direction tie exactly, as the similarity says), ``|k|^2`` for
    euclidean. keys ``(B, M, D)`` -> ``((B, M, D), (B, M) or None)``."""
    if similarity == "cosine":
        return scores.prepare_features(keys, similarity), None
    if similarity == "euclidean":
        return keys, keys.square().sum(-1)
    return keys, None


def rank_scores(q: torch.Tensor, keys: torch.Tensor, stats: torch.Tensor | None, similarity: str) -> torch.Tensor:
    """Scores that rank every row's candidates as the similarity does, with fewer passes: the
    factors and terms constant along a row (``1/|q|``, ``|q|^2``, a positive scale) are left
    out. q ``(B, c, D)``, keys and stats from `rank_keys` -> ``(B, c, M)``. For selection
    only; `scores.paired_feature_scores` recomputes the selected scores exactly."""
    dots = q @ keys.transpose(-1, -2)
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
