"""Helpers shared by the property files: devices, dtypes, capability skips, PyTorch baselines
and gradients."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import pytest
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from conftest import available_devices
from convnn_ref.config import ConvNNConfig
from suites.implementations import Implementation
from suites.strategies import DTYPES, ConvCase

DEVICES = available_devices()
dtypes = st.sampled_from(DTYPES)
LOW_DTYPES = (torch.float16, torch.bfloat16)


def skip_outside(
    impl: Implementation, config: ConvNNConfig, *, form: str, dtype: torch.dtype, device: str, **kw: object
) -> None:
    """Skip (with the implementation's reason) when the case is outside its capabilities."""
    reason = impl.capabilities.reason(config, form=form, dtype=dtype, device=device, **kw)  # type: ignore[arg-type]
    if reason is not None:
        pytest.skip(f"{impl.name}: {reason}")


def torch_conv(case: ConvCase, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv{1,2,3}d`` of the case, in the tensors' dtype and device."""
    conv = (F.conv1d, F.conv2d, F.conv3d)[case.dims - 1]
    with warnings.catch_warnings():  # 'same' with even kernels: PyTorch warns about a padded copy
        warnings.simplefilter("ignore", UserWarning)
        return conv(
            x, weight, bias, stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups
        )


def promote(tensors: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    """float64 CPU copies (gold inputs: the test-dtype values, promoted)."""
    return {n: None if t is None else t.detach().to("cpu", torch.float64) for n, t in tensors.items()}


def with_grads(
    fn: Callable[..., torch.Tensor], tensors: Mapping[str, torch.Tensor | None], seed: int, dtype: torch.dtype
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Run ``fn(**tensors)`` with every tensor requiring grad, backpropagate a seeded random
    cotangent (drawn in float64, rounded to the test ``dtype``, then cast to the output's dtype,
    so gold and cand see the same values). Returns the output and the gradients by name."""
    leaves = {n: None if t is None else t.detach().clone().requires_grad_(True) for n, t in tensors.items()}
    out = fn(**leaves)
    g = torch.Generator().manual_seed(seed + 11)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype).to(out.dtype).to(out.device)
    out.backward(cot)
    return out.detach(), {n: None if t is None else t.grad for n, t in leaves.items()}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
