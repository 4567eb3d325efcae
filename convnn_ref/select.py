"""Step 2 of ConvNN: top-k selection with one deterministic tie rule, and slot order.

Tie rule (the only one in this project): among equal scores, the candidate with the lower
index ranks first. ``torch.topk`` leaves the order of ties unspecified (and CPU and CUDA
differ), so `topk_lowest_index` canonicalises its result and falls back to a stable sort on
the rows where a tie straddles the k-th place.
"""

from __future__ import annotations

import torch


def topk_lowest_index(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row, by descending score, ties to the lower index.

    scores ``(..., M)`` (``-inf`` marks a disallowed candidate) -> ``(values, indices)``,
    each ``(..., k)``. Runs without autograd; recompute differentiable scores from indices.
    """
    with torch.no_grad():
        m = scores.shape[-1]
        if k == m:
            values, indices = scores.sort(dim=-1, descending=True, stable=True)
            return values, indices
        values, indices = scores.topk(k + 1, dim=-1, sorted=True)
        # A row is ambiguous when its (k+1)-th value equals its k-th: only then can the *set*
        # depend on the tie rule. Those rows (rare on real data) get a stable sort. Ties among
        # disallowed (-inf) candidates are harmless: those slots are empty.
        kth, next_ = values[..., k - 1], values[..., k]
        values, indices = values[..., :k], indices[..., :k]
        ambiguous = (kth == next_) & (kth > float("-inf"))
        tied_inside = ((values[..., 1:] == values[..., :-1]) & (values[..., 1:] > float("-inf"))).any()
        if not bool(ambiguous.any() | tied_inside):
            return values, indices
        if bool(ambiguous.any()):
            rows = ambiguous.nonzero(as_tuple=True)
            v, i = scores[rows].sort(dim=-1, descending=True, stable=True)
            values[rows] = v[..., :k]
            indices[rows] = i[..., :k]
        # Within the selected set, order ties by index: sort by index, then stably by value.
        indices, perm = indices.sort(dim=-1)
        values = values.gather(-1, perm)
        values, order = values.sort(dim=-1, descending=True, stable=True)
        indices = indices.gather(-1, order)
        return values, indices


def order_by_offset(indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Reorder each query's k selected candidates by their offset from the query,
    lexicographically over the axes (axis 0 most significant): slot t is then conv tap t.

    indices ``(Nq, k)``, offsets ``(Nq, k, d)`` (any real dtype) -> reordered ``(Nq, k)``.
    """
    order = torch.arange(indices.shape[-1], device=indices.device).expand_as(indices)
    for axis in reversed(range(offsets.shape[-1])):
        key = offsets[..., axis].gather(-1, order)
        order = order.gather(-1, key.sort(dim=-1, stable=True).indices)
    return indices.gather(-1, order)
