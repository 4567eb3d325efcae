"""Neighbourhood attention as ConvNN: the window candidate rule (`ConvNNConfig`, "Candidates",
``window``) with scaled-dot scores, softmax and the sum kernel over every candidate.

- `window_attention`: the ConvNN entry point of the window rule, tokens channels-last on a grid:
  q, k ``(B, *S, D)``, v ``(B, *S, Dv)``;
- `neighborhood_attention`: the exact twin of NATTEN's ``na1d/na2d/na3d``, in NATTEN's layout
  ``(B, *S, heads, D)``;
- `neighborhood_config`: the configuration those compute;
- `NeighborhoodAttention`: a multi-head layer (``qkv`` and ``proj`` linear maps, as NATTEN's
  ``NeighborhoodAttention1D/2D/3D``: their state dicts load into it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from convnn_ref.config import ConvNNConfig, check_bool, check_int, check_real
from convnn_ref.fast import engine
from convnn_ref.fast.plan import default_memory_budget
from convnn_ref.fast.routes import COMPUTE_DTYPES
from convnn_ref.fast.window_route import window_attention as _tiled_window_attention
from convnn_ref.validation import check_config, check_memory_budget, check_tensor
from convnn_ref.window import window_geometry

__all__ = ["NeighborhoodAttention", "neighborhood_attention", "neighborhood_config", "window_attention"]

AxisInts = int | tuple[int, ...]
AxisBools = bool | tuple[bool, ...]


def neighborhood_config(
    kernel_size: AxisInts, dilation: AxisInts = 1, stride: AxisInts = 1, is_causal: AxisBools = False, scale: float | None = None
) -> ConvNNConfig:
    """The ConvNN configuration of NATTEN's neighbourhood attention: candidates = the query's
    window (``kernel_size``, ``dilation``, ``stride`` as NATTEN's, here ``window_stride``,
    ``is_causal`` per axis), k = every candidate, rho = softmax of ``scale * q.k`` (default
    ``1/sqrt(D)``), kernel = sum."""
    return ConvNNConfig(
        k=None, basis="feature", similarity="scaled_dot", scale=scale, rho="softmax", kernel="sum",
        candidates="window", kernel_size=kernel_size, dilation=dilation, window_stride=stride, causal=is_causal,
    )


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ConvNNConfig, *, memory_budget: int | None = None
) -> torch.Tensor:
    """ConvNN with ``candidates='window'``: q, k ``(B, *S, D)``, v ``(B, *S, Dv)`` with 1 to 3
    grid axes ``S`` (tokens channels-last; fold heads into B) -> ``(B, *S, Dv)``. Half precision
    is computed in float32 and returned in the input's dtype. ``memory_budget``: bytes of score
    blocks per chunk of tiles (None: the device's default)."""
    check_config(config)
    engine.setting()  # an unknown CONVNN_SELECT_ENGINE is an error on every route (this one selects by window)
    if config.candidates != "window":
        raise ValueError(f"window_attention needs candidates='window', got candidates={config.candidates!r}")
    q = check_tensor(q, "q", (3, 4, 5), "(B, *S, D) with 1 to 3 grid axes")
    k = check_tensor(k, "k", (3, 4, 5), "(B, *S, D) with 1 to 3 grid axes")
    v = check_tensor(v, "v", (3, 4, 5), "(B, *S, Dv) with 1 to 3 grid axes")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}; move them to one device")
        if t.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but q has dtype {q.dtype}; cast them to one dtype")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape (B, *S, D) = {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"v must have shape (B, *S, Dv) with q's (B, *S) = {tuple(q.shape[:-1])}, got {tuple(v.shape)}")
    budget = check_memory_budget(memory_budget) or default_memory_budget(q.device)
    geometry = window_geometry(config, tuple(q.shape[1:-1]))
    b, dim, dtype = q.shape[0], q.shape[-1], q.dtype
    n = math.prod(geometry.shape)
    scale = (config.scale if config.scale is not None else 1.0 / math.sqrt(dim)) * config.rho_scale
    wide = COMPUTE_DTYPES.get(dtype)
    if wide is not None:
        q, k, v = q.to(wide), k.to(wide), v.to(wide)
    y = _tiled_window_attention(q.reshape(b, n, dim), k.reshape(b, n, dim), v.reshape(b, n, v.shape[-1]), geometry, scale, budget)
    return y.reshape(*v.shape).to(dtype)


def neighborhood_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel_size: AxisInts,
    dilation: AxisInts = 1,
    stride: AxisInts = 1,
    is_causal: AxisBools = False,
    scale: float | None = None,
    *,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """NATTEN's ``na1d/na2d/na3d`` as ConvNN: query, key ``(B, *S, heads, D)``, value
    ``(B, *S, heads, Dv)`` with 1 to 3 grid axes -> ``(B, *S, heads, Dv)``. Each query attends
    to its window (docs/semantics.md, "Neighbourhood attention"): ``kernel_size`` (>= 2, odd or
    even), ``dilation``, ``stride`` (queries of one stride group share a window) and
    ``is_causal`` per axis; ``scale`` defaults to ``1/sqrt(D)``. Every head has its own keys
    (no grouped-query heads). The keywords are NATTEN's; pass them by name (NATTEN's positional
    order has ``stride`` before ``dilation``)."""
    tensors = {"query": query, "key": key, "value": value}
    for name, t in tensors.items():
        check_tensor(t, name, (4, 5, 6), "(B, *S, heads, D) with 1 to 3 grid axes")
    if key.shape[:-1] != query.shape[:-1] or value.shape[:-1] != query.shape[:-1]:
        raise ValueError(
            f"query, key and value must share (B, *S, heads), got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"key must have the query's head_dim {query.shape[-1]}, got {key.shape[-1]}")
    config = neighborhood_config(kernel_size, dilation, stride, is_causal, scale)
    d = query.dim() - 3
    window_geometry(config, tuple(query.shape[1 : d + 1]))  # the knobs against the grid, before any copy
    heads_last = [0, d + 1, *range(1, d + 1), d + 2]  # (B, *S, H, D) -> (B, H, *S, D)

    def fold(t: torch.Tensor) -> torch.Tensor:
        return t.permute(heads_last).reshape(-1, *t.shape[1 : d + 1], t.shape[-1])

    y = window_attention(fold(query), fold(key), fold(value), config, memory_budget=memory_budget)
    b, h = query.shape[0], query.shape[d + 1]
    return y.reshape(b, h, *y.shape[1:]).permute(0, *range(2, d + 2), 1, d + 2)


class NeighborhoodAttention(nn.Module):
    """Multi-head neighbourhood attention on ``x`` ``(B, *S, dim)`` with ``spatial_dims`` grid
    axes: ``qkv`` (``Linear(dim, 3*dim)``), `neighborhood_attention` per head, ``proj``
    (``Linear(dim, dim)``). The parameter names and layout are NATTEN's
    ``NeighborhoodAttention{1,2,3}D``'s, so their state dict loads here."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: AxisInts,
        *,
        spatial_dims: int = 2,
        dilation: AxisInts = 1,
        stride: AxisInts = 1,
        is_causal: AxisBools = False,
        qkv_bias: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        dim = check_int(dim, "dim", minimum=1)
        num_heads = check_int(num_heads, "num_heads", minimum=1)
        spatial_dims = check_int(spatial_dims, "spatial_dims", minimum=1)
        if spatial_dims > 3:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got spatial_dims={spatial_dims}")
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}")
        check_bool(qkv_bias, "qkv_bias")
        if scale is not None:
            scale = check_real(scale, "scale", low=0.0, low_open=True)
        self.config = neighborhood_config(kernel_size, dilation, stride, is_causal, scale)  # validated here
        self.dim, self.num_heads, self.spatial_dims = dim, num_heads, spatial_dims
        self.kernel_size, self.dilation, self.stride, self.is_causal, self.scale = kernel_size, dilation, stride, is_causal, scale
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", (self.spatial_dims + 2,), f"(B, *S, dim) with {self.spatial_dims} grid axes")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have {self.dim} channels in its last axis, got shape {tuple(x.shape)}")
        window_geometry(self.config, tuple(x.shape[1:-1]))  # the knobs against the grid, before any work
        head_dim = self.dim // self.num_heads
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, self.num_heads, head_dim)
        q, k, v = qkv.unbind(dim=-3)
        y = neighborhood_attention(q, k, v, self.kernel_size, self.dilation, self.stride, self.is_causal, self.scale)
        return self.proj(y.reshape(x.shape))
