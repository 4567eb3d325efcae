"""PyTorch's FlexAttention with a neighbourhood-attention ``mask_mod`` as an implementation
under test (`suites.implementations`), window form only:

    python -m suites.conformance --impl flex-na

The mask is this module's own reading of the window rule, in index arithmetic on the flat token
indices FlexAttention hands to ``mask_mod`` (docs/semantics.md, "Neighbourhood attention"), turned
into a block mask by ``create_block_mask``. What it declares, as measured on the CPU: the window
form, float64, float32, float16 and bfloat16, forward only (FlexAttention has no CPU backward).
Eager by default (``compiled=False``: the unfused path, no compiler needed); `FlexNA(compiled=True)`
runs ``torch.compile(flex_attention)``, which the benchmarks time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from convnn_ref.config import ConvNNConfig
from suites.implementations import Capabilities, Implementation

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _per_axis(value: Any, d: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple) and len(value) == d else (value[0] if isinstance(value, tuple) else value,) * d


def neighborhood_mask_mod(
    shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...], causal: tuple[bool, ...]
) -> MaskMod:
    """``mask_mod(b, h, q_idx, kv_idx)``: True where key ``kv_idx`` is in query ``q_idx``'s window."""

    def axis_ok(a: int, qx: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
        length, kk, s, dd = shape[a], kernel[a], stride[a], dilation[a]
        same_group = (qx % dd) == (kx % dd)
        qg, kg = qx // dd, kx // dd
        group_len = (length - (qx % dd) + dd - 1) // dd
        if causal[a]:
            leader = torch.clamp((qg // s) * s + s - 1, max=group_len - 1)
            return same_group & (kg <= qg) & (leader - kg < kk)
        leader = torch.clamp((qg // s) * s + s // 2, max=group_len - 1)
        first = torch.clamp(torch.clamp(leader - kk // 2, max=group_len - kk), min=0)
        return same_group & (kg >= first) & (kg < first + kk)

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        ok = None
        for a in range(len(shape)):
            inner = math.prod(shape[a + 1 :])
            qx, kx = (q_idx // inner) % shape[a], (kv_idx // inner) % shape[a]
            term = axis_ok(a, qx, kx)
            ok = term if ok is None else ok & term
        assert ok is not None
        return ok

    return mask_mod


def window_block_mask(config: ConvNNConfig, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Any:
    """The FlexAttention block mask of ``config``'s window on a grid ``shape``."""
    d = len(shape)
    kernel, stride, dilation = _per_axis(config.kernel_size, d), _per_axis(config.window_stride, d), _per_axis(config.dilation, d)
    for a in range(d):  # outside NATTEN's domain the window is undefined: refuse it, as NATTEN does
        if kernel[a] * dilation[a] > shape[a]:
            raise ValueError(f"kernel_size * dilation exceeds the grid: axis {a} has length {shape[a]}, kernel_size={kernel[a]}, dilation={dilation[a]}")
        if stride[a] > kernel[a]:
            raise ValueError(f"window_stride must not exceed kernel_size: axis {a} has window_stride={stride[a]}, kernel_size={kernel[a]}")
    mod = neighborhood_mask_mod(
        tuple(shape), _per_axis(config.kernel_size, d), _per_axis(config.window_stride, d),
        _per_axis(config.dilation, d), _per_axis(config.causal, d),
    )
    n = math.prod(shape)
    return create_block_mask(mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device=str(device))


class FlexNA(Implementation):
    name = "flex-na"
    capabilities = Capabilities(
        forms=("window",),
        candidates=("window",),
        dtypes=("float64", "float32", "float16", "bfloat16"),
        devices=("cpu",),
        backward=False,
        masks=False,
    )

    def __init__(self, compiled: bool = False) -> None:
        self.compiled = compiled
        self._attention = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention

    def window_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
        shape = tuple(q.shape[1:-1])
        b, n = q.shape[0], math.prod(shape)
        block_mask = window_block_mask(config, shape, q.device)
        scale = (config.scale if config.scale is not None else q.shape[-1] ** -0.5) * config.rho_scale
        flat = [t.reshape(b, 1, n, t.shape[-1]) for t in (q, k, v)]
        y = self._attention(*flat, block_mask=block_mask, scale=scale)
        return y.reshape(*v.shape)
