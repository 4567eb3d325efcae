"""Baselines timed in the same sweep as ConvNN, as code (the functions below, the conv calls in
`cases.py`) and as data (`BASELINES`: what each one is, which ConvNN rows it is compared with,
on which row fields). The sweep writes that data into its results, and the report reads it from
there.

- ``conv2d`` / ``conv2d-depthwise``: `F.conv2d` with the matching kernel (built in `cases.py`).
- ``sdpa``: `F.scaled_dot_product_attention` with whatever backend PyTorch picks (recorded).
- ``sdpa-math``: the same, forced onto the math backend.
- ``kvt-dense``: `cr.kvt_attention`, the KVT paper's dense masked definition.
- ``dense-naive``: ConvNN the way research code computes it (`dense_naive_convnn`).
- ``flex-na-compiled``, ``natten-na2d``, ``sdpa-na-mask``: neighbourhood attention's baselines
  (`suites.bench.neighborhood`); full SDPA (``sdpa``) is compared with those rows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

#: Row fields that every ConvNN row shares with the baseline row it is divided by.
SHAPE = ("N", "side", "C", "B", "dtype", "device", "direction")


@dataclass(frozen=True)
class Baseline:
    """One baseline: its rows are recorded under mode ``computes``; a ConvNN row of a mode in
    ``compared_with`` is divided by the baseline row that equals it on every field of
    ``match`` (and comes from the same machine)."""

    name: str
    label: str
    computes: str
    compared_with: tuple[str, ...]
    match: tuple[str, ...]

    def as_data(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "computes": self.computes,
                "compared_with": list(self.compared_with), "match": list(self.match)}


_SAME_CASE = ("mode", "k", *SHAPE)
_ANY_SELECTION = ("feature", "feature-random", "feature-grid", "hybrid", "attention", "kvt", "neighborhood")
BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("conv2d", "F.conv2d with the same kernel", "position", ("position",), _SAME_CASE),
        Baseline("conv2d-depthwise", "depthwise F.conv2d (groups = C)", "position-depthwise", ("position-depthwise",), _SAME_CASE),
        Baseline("dense-naive", "research-style feature ConvNN: whole N×N scores, top-k, expanded gather, Conv1d",
                 "feature", ("feature",), _SAME_CASE),
        Baseline("sdpa", "F.scaled_dot_product_attention, one head, PyTorch's default (fused) backend", "attention",
                 _ANY_SELECTION, SHAPE),
        Baseline("sdpa-math", "F.scaled_dot_product_attention, one head, math backend", "attention", ("attention", "kvt"), SHAPE),
        Baseline("kvt-dense", "KVT as defined: dense scores, top-k mask, softmax (cr.kvt_attention)", "kvt", ("kvt",), _SAME_CASE),
        # neighbourhood attention (suites/bench/neighborhood.py): same window (k = kernel²), same shape
        Baseline("flex-na-compiled", "torch.compile(flex_attention) with the NA block mask", "neighborhood", ("neighborhood",), _SAME_CASE),
        Baseline("natten-na2d", "NATTEN na2d (0.21.7; on the CPU its eager Flex backend)", "neighborhood", ("neighborhood",), _SAME_CASE),
        Baseline("sdpa-na-mask", "F.scaled_dot_product_attention with the dense N×N window mask", "neighborhood", ("neighborhood",), _SAME_CASE),
    )
}


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
