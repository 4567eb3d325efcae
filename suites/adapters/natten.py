"""NATTEN's neighbourhood attention (``natten.na1d/na2d/na3d``, pinned 0.21.7) as an
implementation under test (`suites.implementations`), window form only:

    python -m suites.conformance --impl natten

What it declares, as measured on the CPU build (pure Python, its Flex backend, no libnatten):
the window form (``candidates='window'``: every kernel size >= 2, odd and even, per axis,
dilation, window stride, causal per axis, 1 to 3 axes), float32, float16 and bfloat16 (float64:
"could not find a suitable backend"), forward only (FlexAttention has no CPU backward), head
sizes D = Dv that are powers of two from 8 to 512, and not the one case its CPU path cannot run: a 1-D causal window as long as the sequence, which
NATTEN hands to its attention operator, whose Flex backend takes no causal mask.
"""

from __future__ import annotations

from typing import Any

import torch

from convnn_ref.config import ConvNNConfig
from suites.implementations import Capabilities, Implementation, Shapes


def _per_axis(value: Any, d: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple) and len(value) == d else (value[0] if isinstance(value, tuple) else value,) * d


def _natten_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    if shapes.dim is not None and shapes.vdim is not None:
        if shapes.dim != shapes.vdim:
            return "NATTEN's CPU (Flex) path needs one head size for q, k and v"
        if shapes.dim < 8 or shapes.dim > 512 or shapes.dim & (shapes.dim - 1):
            return "NATTEN's CPU (Flex) path takes head sizes that are powers of two from 8 to 512"
    if shapes.spatial is None or len(shapes.spatial) != 1:
        return None
    kernel = _per_axis(config.kernel_size, 1)[0]
    causal = _per_axis(config.causal, 1)[0]
    if causal and kernel == shapes.spatial[0]:
        return "1-D causal window as long as the sequence: NATTEN calls its attention operator, whose CPU backend has no causal mask"
    return None


class NattenNA(Implementation):
    name = "natten"
    capabilities = Capabilities(
        forms=("window",),
        candidates=("window",),
        dtypes=("float32", "float16", "bfloat16"),
        devices=("cpu",),
        backward=False,
        masks=False,
        check=_natten_check,
    )

    def window_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
        import natten

        d = q.dim() - 2
        op = (natten.na1d, natten.na2d, natten.na3d)[d - 1]
        scale = (config.scale if config.scale is not None else q.shape[-1] ** -0.5) * config.rho_scale
        y = op(
            q.unsqueeze(-2), k.unsqueeze(-2), v.unsqueeze(-2),
            kernel_size=_per_axis(config.kernel_size, d), stride=_per_axis(config.window_stride, d),
            dilation=_per_axis(config.dilation, d), is_causal=_per_axis(config.causal, d), scale=scale,
        )
        return y.squeeze(-2)
