"""Baselines timed in the same sweep as ConvNN.

- ``conv2d`` / ``conv2d-depthwise``: `F.conv2d` with the matching kernel (built in `cases.py`).
- ``sdpa``: `F.scaled_dot_product_attention` with whatever backend PyTorch picks (recorded).
- ``sdpa-math``: the same, forced onto the math backend.
- ``kvt-dense``: `cr.kvt_attention`, the KVT paper's dense masked definition.
- ``dense-naive``: ConvNN the way research code computes it (`dense_naive_convnn`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BASELINES = ("conv2d", "conv2d-depthwise", "sdpa", "sdpa-math", "kvt-dense", "dense-naive")


def dense_naive_convnn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int) -> torch.Tensor:
    """Feature-mode ConvNN (cosine, all candidates, rank slots, full kernel) as research code
    writes it: the whole ``(B, N, N)`` score matrix, a top-k over it, the values expanded to
    ``(B, C, N, k)`` before gathering, then ``Conv1d(kernel_size=k, stride=k)``.

    x ``(B, C, H, W)``, weight ``(C_out, C, k)``, bias ``(C_out,)`` -> ``(B, C_out, H, W)``.
    """
    b, c, h, w = x.shape
    n = h * w
    f = x.reshape(b, c, n)
    unit = F.normalize(f, dim=1)
    scores = unit.transpose(1, 2) @ unit  # (B, N, N): every pair at once
    index = scores.topk(k, dim=-1).indices  # (B, N, k), descending score
    expanded = f.unsqueeze(-1).expand(b, c, n, k)  # (B, C, N, k) view of the values
    gathered = torch.gather(expanded.contiguous(), 2, index.unsqueeze(1).expand(b, c, n, k))
    y = F.conv1d(gathered.reshape(b, c, n * k), weight, bias, stride=k)  # (B, C_out, N)
    return y.reshape(b, -1, h, w)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`F.scaled_dot_product_attention` as one head: q, k, v ``(B, N, D)`` viewed as
    ``(B, 1, N, D)`` (on the CPU only the 4-D layout reaches the fused flash kernel; 3-D inputs
    fall back to math), with whatever backend PyTorch picks. Returns ``(B, N, D)``."""
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]


def sdpa_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`sdpa` forced onto the math backend."""
    with sdpa_kernel(SDPBackend.MATH):
        return sdpa(q, k, v)


def sdpa_backend_name(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """The backend `sdpa` dispatches to for these inputs (PyTorch's own choice, read with the
    private ``torch._fused_sdp_choice``; "unknown" where that is missing)."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    try:
        code = int(choose(q[:, None], k[:, None], v[:, None]))
        return SDPBackend(code).name.lower()
    except (RuntimeError, ValueError, TypeError):
        return "unknown"
