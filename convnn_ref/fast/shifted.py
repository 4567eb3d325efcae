"""The shifted route: position-basis aggregation by shifted matrix products, for tables with
shift structure.

When every query's neighbours sit at the same offsets from its first neighbour (the conv
configuration at stride 1: ``index[i, t] = base[i] + shift[t]`` in the padded grid),

    y[:, i] = sum_t W_t @ x[:, base[i] + shift[t]]

is k dense matrix products over *contiguous* slices of the padded input, with no gather of
``(B, Nq, k, C)``. `shift_structure` detects the structure from the table (so this path is
driven by the same generic top-k selection as every other) and `shifted_aggregate` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convnn_ref.fast.plan import block_sizes


@dataclass(frozen=True)
class ShiftStructure:
    """``index = base[:, None] + shifts[None, :]`` into a grid of shape ``grid``.

    base ``(Nq,)`` int64; shifts: k ints >= 0. ``box``: when the bases are exactly the points
    of the box ``[0, box)`` of the grid, row-major (stride-1 queries), its shape, else None.
    """

    base: torch.Tensor
    shifts: tuple[int, ...]
    grid: tuple[int, ...]
    box: tuple[int, ...] | None


def shift_structure(index: torch.Tensor, grid: tuple[int, ...], out: tuple[int, ...]) -> ShiftStructure | None:
    """The shift structure of a position table ``(Nq, k)`` into the row-major grid ``grid`` with
    query grid ``out``, or None when it has none or when computing every point between the
    first and last base would waste more than half the work (strided queries)."""
    if index.dim() != 2 or index.shape[0] == 0:
        return None
    rel = index - index[:, :1]
    shifts = rel[0]
    if not bool((rel == shifts).all()):
        return None
    low = int(shifts.min())
    base = index[:, 0] + low
    shifts = shifts - low
    span = int(base.max()) - int(base.min()) + 1
    if span > 2 * index.shape[0]:
        return None
    box: tuple[int, ...] | None = None
    if len(out) == len(grid) and all(o <= g for o, g in zip(out, grid)):
        flat = torch.zeros((), dtype=torch.int64, device=index.device)
        for axis, n in enumerate(out):
            flat = flat[..., None] * grid[axis] + torch.arange(n, device=index.device)
        if flat.numel() == base.numel() and bool((flat.reshape(-1) == base).all()):
            box = tuple(out)
    return ShiftStructure(base=base, shifts=tuple(int(s) for s in shifts), grid=tuple(grid), box=box)


def channels_first_grid(x: torch.Tensor, padding: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """x ``(B, C, *S)`` zero-padded into ``(C, B * M)``, M the padded grid's size: one fill and
    one copy (the layout `shifted_aggregate` multiplies)."""
    b, c = x.shape[:2]
    padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[2:], padding)]
    grid = x.new_zeros(c, b, *padded)
    interior = (slice(None), slice(None), *(slice(lo, lo + s) for s, (lo, _) in zip(x.shape[2:], padding)))
    grid[interior] = x.transpose(0, 1)
    return grid.reshape(c, -1)


def shifted_aggregate(
    x2: torch.Tensor,
    batch: int,
    structure: ShiftStructure,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: int,
) -> torch.Tensor:
    """``y[b, :, i] = bias + sum_t W_t x[b, :, base_i + shift_t]`` with ``W_t = weight[..., t]``.

    x2 ``(C_in, B * M)`` from `channels_first_grid` (column ``b*M + j`` is grid point j of
    sample b), weight ``(C_out, C_in/groups, k)`` -> ``(B, C_out, *box)`` when the structure
    has a box, else ``(B, C_out, Nq)``.
    """
    c_in = x2.shape[0]
    m = x2.shape[1] // batch
    c_out = weight.shape[0]
    base, shifts = structure.base, structure.shifts
    # Output column j of sample b reads columns b*M + j + shift < (b+1)*M only, so the slices
    # never mix samples where an output is kept.
    length = (batch - 1) * m + int(base.max()) + 1
    cg_in, cg_out = c_in // groups, c_out // groups
    w = weight.reshape(groups, cg_out, cg_in, -1)
    xg = x2.reshape(groups, cg_in, -1)
    out = _ShiftedProducts.apply(xg, w, shifts, length)
    out = out.reshape(c_out, length)
    if structure.box is not None:
        # The kept columns form a box of each sample's grid: view it, one copy to (B, C_out, *box).
        grid_strides = [1] * len(structure.grid)
        for axis in range(len(structure.grid) - 2, -1, -1):
            grid_strides[axis] = grid_strides[axis + 1] * structure.grid[axis + 1]
        view = out.as_strided((c_out, batch, *structure.box), (out.stride(0), m, *grid_strides))
        y = view.transpose(0, 1)
        shape = (1, c_out) + (1,) * len(structure.box)
        return y.contiguous() if bias is None else y + bias.reshape(shape)
    columns = (torch.arange(batch, device=base.device)[:, None] * m + base[None, :]).reshape(-1)
    y = out.index_select(1, columns).reshape(c_out, batch, -1).transpose(0, 1)
    return y if bias is None else y + bias[:, None]


def _shifted_products(xg: torch.Tensor, w: torch.Tensor, shifts: tuple[int, ...], length: int) -> torch.Tensor:
    """``out = sum_t w[..., t] @ xg[:, :, shift_t : shift_t + length]``, accumulated in place.
    xg ``(G, C_in/G, L)``, w ``(G, C_out/G, C_in/G, k)`` -> ``(G, C_out/G, length)``. One group
    runs blocked (`_blocked_products`)."""
    groups, _, cg_in = w.shape[:3]
    if groups == 1:
        return _blocked_products(xg[0], w[0], shifts, length)[None]
    out: torch.Tensor | None = None
    for t, shift in enumerate(shifts):
        xs = xg[:, :, shift : shift + length]
        wt = w[..., t]
        if groups == 1:
            out = (wt[0] @ xs[0])[None] if out is None else out[0].addmm_(wt[0], xs[0])[None]
        elif cg_in == 1:  # depthwise: a scaled copy per channel
            out = wt * xs if out is None else out.addcmul_(wt, xs)
        else:
            out = torch.bmm(wt, xs) if out is None else out.baddbmm_(wt, xs)
    assert out is not None
    return out


def _blocked_products(x: torch.Tensor, w: torch.Tensor, shifts: tuple[int, ...], length: int) -> torch.Tensor:
    """`_shifted_products` for one group as one matrix product per column block: the k shifted
    slices of a block of columns stacked into ``(k * C_in, n)`` (an im2col of the block, in one
    reused buffer), times the tap-major weight ``(C_out, k * C_in)``, written into the output's
    columns. x ``(C_in, L)``, w ``(C_out, C_in, k)`` -> ``(C_out, length)``."""
    c_out, c_in, k = w.shape
    wide = w.permute(0, 2, 1).reshape(c_out, k * c_in)  # column t*C_in + c is tap t, channel c
    out = x.new_empty(c_out, length)
    sizes = block_sizes()  # cache-sized: the product reads a block where its k slice copies left it
    cols = max(sizes.min_block_columns, sizes.column_block_bytes // (k * c_in * x.element_size()))
    buffer = x.new_empty(k * c_in * min(cols, length))
    for start in range(0, length, cols):
        n = min(cols, length - start)
        stacked = buffer[: k * c_in * n].view(k, c_in, n)
        for t, shift in enumerate(shifts):
            stacked[t] = x[:, start + shift : start + shift + n]
        torch.mm(wide, stacked.view(k * c_in, n), out=out[:, start : start + n])
    return out


class _ShiftedProducts(torch.autograd.Function):
    """`_shifted_products` with a backward that accumulates into one input-sized gradient
    (slicing under plain autograd would allocate a full-size zero tensor per shift)."""

    @staticmethod
    def forward(ctx, xg: torch.Tensor, w: torch.Tensor, shifts: tuple[int, ...], length: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(xg, w)
        ctx.shifts, ctx.length = shifts, length
        return _shifted_products(xg, w, shifts, length)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:  # type: ignore[override]
        xg, w = ctx.saved_tensors
        shifts, length = ctx.shifts, ctx.length
        grad = grad.contiguous()
        grad_x = torch.zeros_like(xg) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(w) if ctx.needs_input_grad[1] else None
        for t, shift in enumerate(shifts):
            if grad_x is not None:
                grad_x[:, :, shift : shift + length].baddbmm_(w[..., t].transpose(1, 2), grad)
            if grad_w is not None:
                grad_w[..., t] = torch.bmm(grad, xg[:, :, shift : shift + length].transpose(1, 2))
        return grad_x, grad_w, None, None
