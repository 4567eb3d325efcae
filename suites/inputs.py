"""The one seeded input factory of the suites: every tensor a property or a benchmark case
feeds an implementation comes from here, so a printed seed rebuilds it exactly."""

from __future__ import annotations

import torch


def randn(shape: tuple[int, ...], seed: int, dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal values from a generator seeded with ``seed``, made in float64 on the CPU
    and then cast (the same values, up to rounding, in every dtype and on every device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
