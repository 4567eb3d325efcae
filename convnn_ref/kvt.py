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

from convnn_ref.config import ConvNNConfig


def kvt_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int, scale: float | None = None, *, dropout_p: float = 0.0
) -> torch.Tensor:
    """q ``(..., Nq, D)``, k ``(..., Nk, D)``, v ``(..., Nk, Dv)`` -> ``(..., Nq, Dv)``.

    Dense and masked, as the paper computes it: ``softmax(mask_topk(q k^T * scale)) v``.
    ``dropout_p`` drops probabilities (torch's global RNG), as the paper's block does.
    """
    if not 1 <= topk <= k.shape[-2]:
        raise ValueError(f"topk={topk} must lie in [1, Nk={k.shape[-2]}]")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    attn = (q @ k.transpose(-2, -1)) * scale
    kept = attn.topk(topk, dim=-1).indices
    mask = torch.full_like(attn, float("-inf")).scatter(-1, kept, 0.0)
    p = torch.softmax(attn + mask, dim=-1)
    if dropout_p > 0:
        p = torch.nn.functional.dropout(p, dropout_p)
    return p @ v


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
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.num_heads = num_heads
        self.topk = topk
        self.scale = qk_scale if qk_scale is not None else (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, N, C), got {tuple(x.shape)}")
        b, n, c = x.shape
        if self.topk > n:
            raise ValueError(f"topk={self.topk} is larger than the number of tokens N={n}")
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        dropout_p = self.attn_drop.p if self.training else 0.0
        y = kvt_attention(qkv[0], qkv[1], qkv[2], self.topk, self.scale, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(y))
