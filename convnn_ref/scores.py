"""Step 1 of ConvNN: similarity scores, larger meaning closer (`ConvNNConfig`, "Step 1").

Two families: position scores (negative distances between coordinates; data-independent)
and feature scores (similarities between feature vectors). Hybrid scores are feature
scores on `hybrid_embedding`. Every function works on whole matrices and on gathered
neighbours alike: ``pairwise_*`` give ``(..., Nq, M)``, ``paired_*`` score aligned pairs.
"""

from __future__ import annotations

import math

import torch

#: Norms (and the hybrid embedding's spread) are clamped here: a zero token stays zero.
NORM_EPS = 1e-12


def position_scores(query: torch.Tensor, cand: torch.Tensor, metric: str, axis_unit: torch.Tensor | None = None) -> torch.Tensor:
    """Negative distances between query and candidate positions.

    query ``(Nq, d)``, cand ``(M, d)``: float64 positions in grid steps (integers, or
    half-integers for even-kernel window centres), so differences are exact; each axis
    difference is then divided by ``axis_unit`` ``(d,)`` (`positions.axis_unit`: coordinate
    units, kernel scaling). Equal distances therefore give bit-identical scores and the tie rule
    decides, not rounding. Returns ``(Nq, M)`` float64.
    """
    return paired_position_scores(query[:, None, :], cand[None, :, :], metric, axis_unit)


def paired_position_scores(
    query: torch.Tensor, cand: torch.Tensor, metric: str, axis_unit: torch.Tensor | None = None
) -> torch.Tensor:
    """`position_scores` of broadcast pairs: query ``(..., d)`` against cand ``(..., d)`` ->
    ``(...)``, with the same operations (so a score recomputed for a selected pair is
    bit-identical to the one it was selected by)."""
    diff = cand - query
    if axis_unit is not None:
        diff = diff / axis_unit
    if metric == "chebyshev":
        return -diff.abs().amax(dim=-1)
    if metric == "euclidean":
        return -diff.square().sum(dim=-1).sqrt()
    raise ValueError(f"metric={metric!r} is not one of ('chebyshev', 'euclidean')")


def default_scale(dim: int) -> float:
    """``1/sqrt(D)``, the scaled dot product's default (as in SDPA)."""
    return 1.0 / math.sqrt(dim)


def prepare_features(f: torch.Tensor, similarity: str) -> torch.Tensor:
    """Features as the similarity consumes them: unit vectors for cosine, unchanged otherwise.
    ``(..., N, D)`` -> ``(..., N, D)``."""
    if similarity == "cosine":
        return f / f.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    return f


def pairwise_feature_scores(q: torch.Tensor, k: torch.Tensor, similarity: str, scale: float | None = None) -> torch.Tensor:
    """Similarity of every query with every candidate, on `prepare_features` output.

    q ``(B, Nq, D)``, k ``(B, M, D)`` -> ``(B, Nq, M)``. euclidean is ``-|q - k|^2``,
    expanded as ``2 q.k - |q|^2 - |k|^2``. scaled_dot scales the dot products, so pairs whose
    dot products tie exactly still tie (the tie rule decides, not rounding).
    """
    dots = q @ k.transpose(-1, -2)
    if similarity in ("cosine", "dot"):
        return dots
    if similarity == "scaled_dot":
        return dots * (default_scale(q.shape[-1]) if scale is None else scale)
    if similarity == "euclidean":
        return 2 * dots - q.square().sum(-1)[..., :, None] - k.square().sum(-1)[..., None, :]
    raise ValueError(f"similarity={similarity!r} is not one of ('cosine', 'euclidean', 'dot', 'scaled_dot')")


def paired_feature_scores(q: torch.Tensor, k: torch.Tensor, similarity: str, scale: float | None = None) -> torch.Tensor:
    """Similarity of aligned pairs on raw features (cosine normalises here): q ``(B, Nq, 1, D)``
    against gathered neighbours k ``(B, Nq, k, D)`` -> ``(B, Nq, k)``. Differentiable; used to
    recompute the selected scores with autograd after a no-grad selection."""
    if similarity == "euclidean":
        return -(q - k).square().sum(-1)
    if similarity == "cosine":
        q = prepare_features(q, similarity)
        k = prepare_features(k, similarity)
    dots = (q * k).sum(-1)
    if similarity == "scaled_dot":
        return dots * (default_scale(q.shape[-1]) if scale is None else scale)
    return dots


def hybrid_embedding(f: torch.Tensor, coords: torch.Tensor, lam: float) -> torch.Tensor:
    """``concat(lam * f / std(f), (1 - lam) * coords)``, std (Bessel-corrected; 0 for a single
    value) over all tokens and channels of each sample, clamped at 1e-12. f ``(B, N, C)``, coords ``(N, d)`` -> ``(B, N, C + d)``."""
    flat = f.flatten(1)
    std = flat.std(dim=1, correction=1 if flat.shape[1] > 1 else 0).clamp_min(NORM_EPS)[:, None, None]
    c = coords.to(f.dtype).expand(f.shape[0], -1, -1)
    return torch.cat([lam * f / std, (1.0 - lam) * c], dim=-1)
