"""The window candidate rule: neighbourhood attention's window of every query (`ConvNNConfig`,
"Candidates", ``window``).

Data-independent: the window depends only on the grid and the knobs. Each axis decides alone
(`axis_windows`); a key is a candidate of a query when its coordinate lies in the query's
window on every axis. Windows are lattices: on an axis with dilation ``d`` the candidates of the
query at ``x`` are ``lo[x], lo[x] + d, ..., hi[x]`` (all congruent to ``x`` modulo ``d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convnn_ref.config import ConvNNConfig, causal_per_axis, per_axis


@dataclass(frozen=True)
class WindowGeometry:
    """The window knobs of one call, per axis of the grid ``shape``."""

    shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    causal: tuple[bool, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


def window_geometry(config: ConvNNConfig, shape: tuple[int, ...]) -> WindowGeometry:
    """The per-axis knobs of ``config`` on a grid ``shape``, checked against it: ``K*d <= L`` on
    every axis, ``window_stride <= K`` (ValueError naming the knob and the axis)."""
    d = len(shape)
    kernel = per_axis(config.kernel_size, d, "kernel_size")
    stride = per_axis(config.window_stride, d, "window_stride")
    dilation = per_axis(config.dilation, d, "dilation")
    causal = causal_per_axis(config.causal, d)
    for a in range(d):
        if kernel[a] * dilation[a] > shape[a]:
            raise ValueError(
                f"kernel_size * dilation must not exceed the grid on any axis: axis {a} has length {shape[a]}, "
                f"kernel_size={kernel[a]}, dilation={dilation[a]}"
            )
        if stride[a] > kernel[a]:
            raise ValueError(f"window_stride (NATTEN's stride) must not exceed kernel_size: axis {a} has window_stride={stride[a]} > kernel_size={kernel[a]}")
    return WindowGeometry(tuple(shape), kernel, stride, dilation, causal)


def axis_windows(length: int, kernel: int, stride: int, dilation: int, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)``, int64 ``(length,)``: the first and last candidate coordinate of each query
    coordinate on one axis (inclusive; candidates step by ``dilation`` between them)."""
    x = torch.arange(length)
    r = x % dilation
    g = x // dilation
    group_len = (length - r + dilation - 1) // dilation  # points of the query's dilation group
    if causal:
        leader = torch.minimum(stride * (g // stride) + stride - 1, group_len - 1)
        first, last = (leader - kernel + 1).clamp_min(0), g
    else:
        leader = torch.minimum(stride * (g // stride) + stride // 2, group_len - 1)
        left, right = kernel // 2, (kernel - 1) // 2
        centre = torch.maximum(torch.minimum(leader, group_len - 1 - right), torch.full_like(leader, left))
        first, last = centre - left, centre + right
    return r + dilation * first, r + dilation * last


def window_mask(geometry: WindowGeometry, device: torch.device | None = None) -> torch.Tensor:
    """The dense ``(N, N)`` boolean candidate matrix (query row, key column, row-major tokens):
    for checks and small grids only (the routes never build it)."""
    allowed: torch.Tensor | None = None
    for a in range(geometry.ndim):
        lo, hi = axis_windows(geometry.shape[a], geometry.kernel[a], geometry.stride[a], geometry.dilation[a], geometry.causal[a])
        x = torch.arange(geometry.shape[a])
        axis = (x[None, :] >= lo[:, None]) & (x[None, :] <= hi[:, None]) & ((x[None, :] - x[:, None]) % geometry.dilation[a] == 0)
        allowed = axis if allowed is None else (allowed[:, None, :, None] & axis[None, :, None, :]).flatten(2).flatten(0, 1)
    assert allowed is not None
    return allowed.to(device) if device is not None else allowed
