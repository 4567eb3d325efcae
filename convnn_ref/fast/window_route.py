"""The window route: neighbourhood attention by tiles, never an ``N x N`` score block.

The queries of one dilation group are cut into tiles of consecutive group coordinates on every
axis. Windows move monotonically with the query, so the union of a tile's windows lies in a box
of keys ``[lo(first query), hi(last query)]`` per axis; every tile gets a box of the same width
(the widest union, shifted inward at the borders), so all tiles of a call are one batched
``F.scaled_dot_product_attention`` over ``(tiles, tile queries, box keys)`` with the boolean
mask of the window rule. A 56 x 56 grid with kernel 7 cut into 8 x 8 tiles scores 64 x 196 keys
per tile instead of 3136: the work is ``(T + K - 1)^d / T^d`` times the window's.

Queries past the end of a short dilation group (when ``d`` does not divide ``L``) pad the last
tile: they repeat the group's last query and their rows are dropped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convnn_ref.window import WindowGeometry, axis_windows

#: Queries per tile, about (the product over axes; each axis gets its d-th root).
TILE_QUERIES = 64


class _AxisTiles:
    """One axis cut into tiles: query and key coordinates (original axis coordinates) of every
    (dilation residue, tile, slot), the key mask per (residue, tile, query slot, key slot), and
    which query slots are real."""

    def __init__(self, length: int, kernel: int, stride: int, dilation: int, causal: bool, tile: int) -> None:
        lo, hi = axis_windows(length, kernel, stride, dilation, causal)
        groups = (length + dilation - 1) // dilation  # the longest group's length
        tile = min(tile, groups)
        n_tiles = -(-groups // tile)
        r = torch.arange(dilation)[:, None]
        g = torch.arange(n_tiles * tile)[None, :]
        group_len = (length - r + dilation - 1) // dilation
        real = g < group_len  # (dilation, n_tiles * tile)
        x = r + dilation * torch.minimum(g, group_len - 1)  # dummy slots repeat the last query
        glo, ghi = (lo[x] - r) // dilation, (hi[x] - r) // dilation  # windows in group coordinates
        glo, ghi = glo.reshape(dilation, n_tiles, tile), ghi.reshape(dilation, n_tiles, tile)
        width = int((ghi[:, :, -1] - glo[:, :, 0]).max()) + 1
        width = min(width, groups)
        start = torch.minimum(glo[:, :, 0], group_len - width).clamp_min(0)  # (dilation, n_tiles)
        kg = start[:, :, None] + torch.arange(width)  # key group coordinates (dilation, n_tiles, width)
        self.mask = (kg[:, :, None, :] >= glo[:, :, :, None]) & (kg[:, :, None, :] <= ghi[:, :, :, None])
        self.mask &= (kg < group_len[:, :, None])[:, :, None, :]
        self.keys = (r[:, :, None] + dilation * kg).clamp_max(length - 1)  # masked where clamped
        self.queries = x.reshape(dilation, n_tiles, tile)
        self.real = real.reshape(dilation, n_tiles, tile)
        self.dilation, self.n_tiles, self.tile, self.width = dilation, n_tiles, tile, width


def _combine(parts: list[torch.Tensor], sizes: list[int], ndim_each: int) -> torch.Tensor:
    """Outer combination over axes of per-axis tensors ``(dilation_a, n_tiles_a, *rest_a)``:
    flat row-major token indices (``sizes`` the axis lengths) or, for bool parts, the AND.
    Returns ``(prod dilation, prod n_tiles, prod rest)``."""
    n = len(parts)
    out: torch.Tensor | None = None
    for a, p in enumerate(parts):
        # place axis a's (dilation, tiles, rest...) dims at positions a, n + a, 2n + a*ndim_each ...
        shape = [1] * (2 * n + n * ndim_each)
        shape[a], shape[n + a] = p.shape[0], p.shape[1]
        for j in range(ndim_each):
            shape[2 * n + j * n + a] = p.shape[2 + j]
        term = p.reshape(shape)
        if p.dtype == torch.bool:
            out = term if out is None else out & term
        else:
            stride = math.prod(sizes[a + 1 :])
            out = term * stride if out is None else out + term * stride
    assert out is not None
    return out.reshape(math.prod(out.shape[:n]), math.prod(out.shape[n : 2 * n]), -1)


def _tiles(geometry: WindowGeometry, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat token indices of every tile's queries ``(tiles, Tq)`` and keys ``(tiles, Wk)``, the
    mask ``(tiles, Tq, Wk)`` and the real-query flags ``(tiles, Tq)``."""
    n = geometry.ndim
    side = max(1, round(TILE_QUERIES ** (1.0 / n)))
    axes = [
        _AxisTiles(geometry.shape[a], geometry.kernel[a], geometry.stride[a], geometry.dilation[a], geometry.causal[a], side)
        for a in range(n)
    ]
    sizes = list(geometry.shape)
    queries = _combine([t.queries for t in axes], sizes, 1)
    keys = _combine([t.keys for t in axes], sizes, 1)
    real = _combine([t.real for t in axes], sizes, 1)
    # The mask: per axis (dilation, tiles, Tq_a, Wk_a) -> (groups, tiles, Tq, Wk) with the query
    # slots of every axis first, then the key slots.
    masks = [t.mask for t in axes]
    mask = _combine(masks, sizes, 2)
    tq, wk = math.prod(t.tile for t in axes), math.prod(t.width for t in axes)
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    return (
        flat(queries).to(device),
        flat(keys).to(device),
        mask.reshape(-1, tq, wk).to(device),
        flat(real).to(device),
    )


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, geometry: WindowGeometry, scale: float, budget: int
) -> torch.Tensor:
    """q, k ``(B, N, D)``, v ``(B, N, Dv)`` (row-major tokens of ``geometry.shape``) ->
    ``(B, N, Dv)``: softmax of ``scale * q.k`` over each query's window, times the values.
    Tiles are processed in chunks whose score block stays within ``budget`` bytes."""
    qi, ki, mask, real = _tiles(geometry, q.device)
    b, n_tiles, tq, wk = q.shape[0], qi.shape[0], qi.shape[1], ki.shape[1]
    per_tile = b * tq * wk * q.element_size() * 2
    chunk = max(1, min(n_tiles, budget // max(per_tile, 1)))
    out = q.new_empty(b, q.shape[1], v.shape[-1])
    for start in range(0, n_tiles, chunk):
        stop = min(n_tiles, start + chunk)
        qt = q[:, qi[start:stop]]  # (B, tiles, Tq, D)
        kt = k[:, ki[start:stop]]
        vt = v[:, ki[start:stop]]
        y = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask[start:stop], scale=scale)
        keep = real[start:stop]
        out[:, qi[start:stop][keep]] = y[:, keep]
    return out
