"""KVT attention as its paper defines it (Wang et al., "KVT: k-NN Attention for Boosting
Vision Transformers", ECCV 2022), written from the definition and independent of ConvNN:
all scaled scores; exactly k kept per query (chosen by index with ``torch.topk``, so exactly
k even under ties); the rest set to ``-inf``; softmax; times V.

`kvt_config` is the ConvNN configuration that equals it for ``k < N`` (docs/semantics.md,
"Exact recovery").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from convnn_ref.config import ConvNNConfig, check_bool, check_int, check_real


def kvt_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int, scale: float | None = None, *, dropout_p: float = 0.0
) -> torch.Tensor:
    """q ``(..., Nq, D)``, k ``(..., Nk, D)``, v ``(..., Nk, Dv)`` -> ``(..., Nq, Dv)``.

    Dense and masked, as the paper computes it: ``softmax(mask_topk(q k^T * scale)) v``.
    ``dropout_p`` drops probabilities (torch's global RNG), as the paper's block does.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2 or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor of rank >= 2, got {t.dtype} of shape {tuple(t.shape)}")
        if t.dtype != q.dtype or t.device != q.device:
            raise TypeError(f"{name} must have q's dtype and device ({q.dtype}, {q.device}), got {t.dtype} on {t.device}")
    if k.shape[-1] != q.shape[-1] or v.shape[-2] != k.shape[-2]:
        raise ValueError(f"k must be (..., Nk, D) and v (..., Nk, Dv) for q (..., Nq, D), got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the batch dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must broadcast") from None
    topk = check_int(topk, "topk", minimum=1)
    if topk > k.shape[-2]:
        raise ValueError(f"topk must lie in [1, Nk={k.shape[-2]}], got topk={topk}")
    dropout_p = check_real(dropout_p, "dropout_p", low=0.0)
    if dropout_p >= 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got dropout_p={dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else check_real(scale, "scale", low=0.0, low_open=True)
    attn = (q @ k.transpose(-2, -1)) * scale
    kept = attn.topk(topk, dim=-1).indices
    mask = torch.full_like(attn, float("-inf")).scatter(-1, kept, 0.0)
    p = torch.softmax(attn + mask, dim=-1)
    if dropout_p > 0:
        p = torch.nn.functional.dropout(p, dropout_p)
    if bool(torch.isfinite(v).all()):
        return p @ v
    # A key outside the top k contributes nothing: not even 0 * inf = NaN, as the dense product
    # would make it. Sum over the kept keys only.
    lead = torch.broadcast_shapes(p.shape[:-2], v.shape[:-2])
    kept = kept.expand(*lead, *kept.shape[-2:])
    rows = v.expand(*lead, *v.shape[-2:])[..., None, :, :].expand(*kept.shape[:-1], *v.shape[-2:])
    picked = rows.gather(-2, kept[..., None].expand(*kept.shape, v.shape[-1]))
    return (p.expand(*lead, *p.shape[-2:]).gather(-1, kept)[..., None] * picked).sum(dim=-2)


def kvt_config(k: int, scale: float | None = None) -> ConvNNConfig:
    """The ConvNN configuration equal to `kvt_attention` with ``topk = k`` (one head)."""
    return ConvNNConfig(k=k, basis="feature", similarity="scaled_dot", scale=scale, rho="softmax", kernel="sum")


class KVTAttention(nn.Module):
    """The paper's multi-head k-NN attention block: one qkv projection, H heads, top-k mask,
    softmax, output projection. x ``(B, N, C)`` -> ``(B, N, C)``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        topk: int = 100,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        dim = check_int(dim, "dim", minimum=1)
        num_heads = check_int(num_heads, "num_heads", minimum=1)
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        topk = check_int(topk, "topk", minimum=1)
        check_bool(qkv_bias, "qkv_bias")
        if qk_scale is not None:
            qk_scale = check_real(qk_scale, "qk_scale", low=0.0, low_open=True)
        for name, p in (("attn_drop", attn_drop), ("proj_drop", proj_drop)):
            if check_real(p, name, low=0.0) >= 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {name}={p}")
        self.dim = dim
        self.num_heads = num_heads
        self.topk = topk
        self.scale = qk_scale if qk_scale is not None else (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B, N, dim={self.dim}), got {tuple(x.shape)}")
        if x.dtype != self.qkv.weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the block's parameters have dtype {self.qkv.weight.dtype}")
        b, n, c = x.shape
        if self.topk > n:
            raise ValueError(f"topk={self.topk} is larger than the number of tokens N={n}")
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        dropout_p = self.attn_drop.p if self.training else 0.0
        y = kvt_attention(qkv[0], qkv[1], qkv[2], self.topk, self.scale, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(y))
