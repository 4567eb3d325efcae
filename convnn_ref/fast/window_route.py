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

import functools
import math

import torch
import torch.nn.functional as F

from convnn_ref.window import WindowGeometry, axis_windows

#: Queries per tile, about (the product over axes; each axis gets its d-th root). 6 x 6 in 2-D:
#: at 56², kernel 7, a tile scores 144 keys per query; larger tiles score more keys per query,
#: smaller ones gather more key rows per query (both measured slower on the CPU).
TILE_QUERIES = 36


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


@functools.lru_cache(maxsize=32)
def _tiles(geometry: WindowGeometry, side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat token indices of every tile's queries ``(tiles, Tq)`` and keys ``(tiles, Wk)``, the
    mask ``(tiles, Tq, Wk)`` and the real-query flags ``(tiles, Tq)`` (CPU; cached: the window
    is data-independent)."""
    n = geometry.ndim
    axes = [
        _AxisTiles(geometry.shape[a], geometry.kernel[a], geometry.stride[a], geometry.dilation[a], geometry.causal[a], side)
        for a in range(n)
    ]
    sizes = list(geometry.shape)
    tq, wk = math.prod(t.tile for t in axes), math.prod(t.width for t in axes)
    queries = _combine([t.queries for t in axes], sizes, 1).reshape(-1, tq)
    keys = _combine([t.keys for t in axes], sizes, 1).reshape(-1, wk)
    real = _combine([t.real for t in axes], sizes, 1).reshape(-1, tq)
    # per axis (dilation, tiles, Tq_a, Wk_a) -> (groups, tiles, Tq, Wk): query slots first, then key slots
    mask = _combine([t.mask for t in axes], sizes, 2).reshape(-1, tq, wk)
    return queries, keys, mask, real


@functools.lru_cache(maxsize=32)
def _plan(geometry: WindowGeometry, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`_tiles` on ``device``, the mask as an additive bias (0 / -inf) in ``dtype``, and the
    real query rows as indices into the flattened ``(tiles * Tq)`` rows (None when all are real)."""
    side = max(1, round(TILE_QUERIES ** (1.0 / geometry.ndim)))
    queries, keys, mask, real = _tiles(geometry, side)
    bias = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, -math.inf)
    rows = None if bool(real.all()) else real.flatten().nonzero().flatten().to(device)
    return queries.to(device), keys.to(device), bias.to(device), rows


@functools.lru_cache(maxsize=4)
def _batch_bias(geometry: WindowGeometry, device: torch.device, dtype: torch.dtype, batch: int) -> torch.Tensor:
    """`_plan`'s bias repeated over the batch, contiguous ``(B, tiles, Tq, Wk)``: the CPU's fused
    SDPA reads a broadcast mask several times slower than a dense one."""
    return _plan(geometry, device, dtype)[2].expand(batch, -1, -1, -1).contiguous()


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, geometry: WindowGeometry, scale: float, budget: int
) -> torch.Tensor:
    """q, k ``(B, N, D)``, v ``(B, N, Dv)`` (row-major tokens of ``geometry.shape``) ->
    ``(B, N, Dv)``: softmax of ``scale * q.k`` over each query's window, times the values.
    Tiles are processed in chunks whose score block stays within ``budget`` bytes."""
    qi, ki, _, rows = _plan(geometry, q.device, q.dtype)
    b, n_tiles, tq, wk = q.shape[0], qi.shape[0], qi.shape[1], ki.shape[1]
    bias = _batch_bias(geometry, q.device, q.dtype, b)
    per_tile = b * tq * wk * q.element_size() * 2  # the score block and its bias
    chunk = max(1, min(n_tiles, budget // max(per_tile, 1)))
    if chunk >= n_tiles:  # one batched call, the usual case
        y = F.scaled_dot_product_attention(q[:, qi], k[:, ki], v[:, ki], attn_mask=bias, scale=scale)
        return _scatter(y, qi, rows, q.shape[1])
    out = q.new_empty(b, q.shape[1], v.shape[-1])
    for start in range(0, n_tiles, chunk):
        stop = min(n_tiles, start + chunk)
        cq, ck = qi[start:stop], ki[start:stop]
        y = F.scaled_dot_product_attention(q[:, cq], k[:, ck], v[:, ck], attn_mask=bias[:, start:stop], scale=scale)
        y, index = y.flatten(1, 2), cq.flatten()
        if rows is not None:
            keep = (rows >= start * tq) & (rows < stop * tq)
            local = rows[keep] - start * tq
            y, index = y[:, local], index[local]
        out = out.index_copy(1, index, y)
    return out


def _scatter(y: torch.Tensor, qi: torch.Tensor, rows: torch.Tensor | None, n: int) -> torch.Tensor:
    """Tile outputs ``(B, tiles, Tq, Dv)`` back to token order ``(B, N, Dv)`` (padding rows dropped)."""
    y, index = y.flatten(1, 2), qi.flatten()
    if rows is not None:
        y, index = y[:, rows], index[rows]
    out = y.new_empty(y.shape[0], n, y.shape[-1])
    return out.index_copy(1, index, y)
