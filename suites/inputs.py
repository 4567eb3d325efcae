"""The one seeded input factory of the suites: every tensor a property or a benchmark case
feeds an implementation comes from here, so a printed seed (and style) rebuilds it exactly.

Styles (`STYLES`) put the inputs where implementations break: ``normal`` (standard normal),
``zero_tokens`` (about a third of the tokens all zero: norm clamps, 0/0 in cosine),
``constant_tokens`` (a third of the tokens one value on every channel: equal cosine directions),
``duplicated_tokens`` (a third of the tokens copies of others in the same sample: exact ties
between interchangeable tokens), ``scaled_copies`` (a third of the tokens copies of others times
a power of two: exactly equal cosine scores of tokens with different values).
``scale`` multiplies everything (1e-3 … 1e4: overflow in squared distances and softmax, underflow,
absolute sentinels such as -1e9 instead of -inf), capped per dtype by `usable_scale` so that a
correct computation stays finite.
"""

from __future__ import annotations

import torch

STYLES = ("normal", "zero_tokens", "constant_tokens", "duplicated_tokens", "scaled_copies")
#: Scales drawn besides 1.
SCALES = (1e-3, 1e-2, 0.1, 10.0, 100.0, 1e3, 1e4)
#: Largest and smallest scale per dtype at which scores (products of two inputs summed over a few
#: channels) and squared distances stay finite and normal: float16 overflows past 65504.
_SCALE_RANGE = {torch.float16: (1e-2, 10.0)}


def randn(shape: tuple[int, ...], seed: int, dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal values from a generator seeded with ``seed``, made in float64 on the CPU
    and then cast (the same values, up to rounding, in every dtype and on every device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def usable_scale(scale: float, dtype: torch.dtype) -> float:
    """``scale`` clamped to what ``dtype`` holds without overflow (see `_SCALE_RANGE`)."""
    lo, hi = _SCALE_RANGE.get(dtype, (0.0, float("inf")))
    return min(max(scale, lo), hi)


def tokens(
    shape: tuple[int, ...],
    seed: int,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
    *,
    style: str = "normal",
    scale: float = 1.0,
    token_axis: int = 1,
    feature_axis: int = 2,
) -> torch.Tensor:
    """A tensor of tokens in ``style``: ``shape`` with tokens along ``token_axis`` (flattened
    over every axis from there when ``feature_axis`` comes before it, as in an image
    ``(B, C, *S)`` with ``token_axis=2, feature_axis=1``) and features along ``feature_axis``.
    Made in float64 from ``seed``, styled, scaled by `usable_scale`, then cast."""
    if style not in STYLES:
        raise ValueError(f"style={style!r} is not one of {STYLES}")
    x = randn(shape, seed, torch.float64)
    if style != "normal" and x.numel():
        x = _styled(x, seed, style, token_axis, feature_axis)
    return (x * usable_scale(scale, dtype)).to(dtype=dtype, device=device)


def _styled(x: torch.Tensor, seed: int, style: str, token_axis: int, feature_axis: int) -> torch.Tensor:
    """Apply ``style`` to a float64 tensor; works on a ``(B, N, F)`` token-major view."""
    shape = x.shape
    if feature_axis < token_axis:  # image (B, C, *S): tokens are the flattened spatial points
        view = x.reshape(shape[0], shape[1], -1).transpose(1, 2).clone()
    else:  # sequence (B, N, D)
        view = x.clone()
    b, n, f = view.shape
    g = torch.Generator().manual_seed(seed + 101)
    chosen = torch.rand(b, n, generator=g) < 1 / 3
    chosen[:, -1] = True  # at least one styled token per sample
    if style == "zero_tokens":
        view[chosen] = 0.0
    elif style == "constant_tokens":
        values = torch.randn(b, n, 1, generator=g, dtype=torch.float64).expand(b, n, f)
        view = torch.where(chosen[..., None], values, view)
    elif style in ("duplicated_tokens", "scaled_copies") and n > 1:
        source = torch.randint(0, n, (b, n), generator=g)
        factor = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)[torch.randint(0, 3, (b, n), generator=g)]
        for bi in range(b):
            for i in chosen[bi].nonzero().flatten().tolist():
                j = int(source[bi, i])
                copy = view[bi, j if j != i else (i + 1) % n]
                view[bi, i] = copy * factor[bi, i] if style == "scaled_copies" else copy
    if feature_axis < token_axis:
        return view.transpose(1, 2).reshape(shape)
    return view
