"""Position-basis aggregation by shifted matrix products, for tables with shift structure.

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


@dataclass(frozen=True)
class ShiftStructure:
    """``index = base[:, None] + shifts[None, :]``. base ``(Nq,)`` int64; shifts: k ints >= 0."""

    base: torch.Tensor
    shifts: tuple[int, ...]


def shift_structure(index: torch.Tensor, num_points: int) -> ShiftStructure | None:
    """The shift structure of a position table ``(Nq, k)`` into ``num_points`` grid points, or
    None when it has none or when computing every point between the first and last base
    would waste more than half the work (strided queries)."""
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
    return ShiftStructure(base=base, shifts=tuple(int(s) for s in shifts))


def shifted_aggregate(
    x_padded: torch.Tensor,
    structure: ShiftStructure,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: int,
) -> torch.Tensor:
    """``y[b, :, i] = bias + sum_t W_t x[b, :, base_i + shift_t]`` with ``W_t = weight[..., t]``.

    x_padded ``(B, C_in, M)`` (the padded grid, flattened row-major), weight
    ``(C_out, C_in/groups, k)`` -> ``(B, C_out, Nq)``.
    """
    b, c_in, m = x_padded.shape
    c_out = weight.shape[0]
    base, shifts = structure.base, structure.shifts
    # Channels-first over the whole batch: column b*M + j is point j of sample b. Output column
    # j of sample b only reads columns b*M + j + shift < (b+1)*M, so slices never cross samples
    # where it matters.
    x2 = x_padded.transpose(0, 1).reshape(c_in, b * m)
    length = (b - 1) * m + int(base.max()) + 1
    cg_in, cg_out = c_in // groups, c_out // groups
    w = weight.reshape(groups, cg_out, cg_in, -1)
    xg = x2.reshape(groups, cg_in, b * m)
    # Accumulate in place unless autograd must see every term.
    inplace = not (torch.is_grad_enabled() and (x_padded.requires_grad or weight.requires_grad))
    out: torch.Tensor | None = None
    for t, shift in enumerate(shifts):
        xs = xg[:, :, shift : shift + length]  # (groups, C_in/groups, length)
        wt = w[..., t]  # (groups, C_out/groups, C_in/groups)
        if groups == 1:
            if out is None:
                out = wt[0] @ xs[0]
            else:
                out = out.addmm_(wt[0], xs[0]) if inplace else torch.addmm(out, wt[0], xs[0])
        elif cg_in == 1:  # depthwise: a scaled copy per channel
            if out is None:
                out = wt * xs
            else:
                out = out.addcmul_(wt, xs) if inplace else torch.addcmul(out, wt, xs)
        else:
            if out is None:
                out = torch.bmm(wt, xs)
            else:
                out = out.baddbmm_(wt, xs) if inplace else torch.baddbmm(out, wt, xs)
    assert out is not None
    out = out.reshape(c_out, length)
    columns = (torch.arange(b, device=base.device)[:, None] * m + base[None, :]).reshape(-1)
    y = out.index_select(1, columns).reshape(c_out, b, -1).transpose(0, 1)
    if bias is not None:
        y = y + bias[:, None]
    return y
