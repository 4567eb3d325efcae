"""Exact convolution (SPEC §3.1, §3.2): ConvNN in `conv_config`'s configuration is ``F.conv*d``,
and `from_conv` layers are the ``nn.ConvNd`` modules they copy, padding modes included."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, promote, skip_outside, torch_conv
from suites.implementations import Implementation
from suites.strategies import EDGE_CONVS, ConvCase, conv_cases


def _conv_property(prop: str, impl: Implementation, case: ConvCase, dtype: torch.dtype, device: str) -> None:
    """cand = impl.convnn, base = F.conv*d in dtype, gold = F.conv*d in float64."""
    config = case.config()
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=case.dims)
    t = case.tensors(dtype, device)
    w = t["weight"]
    assert w is not None
    cand = impl.convnn(t["x"], w.reshape(w.shape[0], w.shape[1], -1), t["bias"], config)
    base = torch_conv(case, t["x"], w, t["bias"])  # type: ignore[arg-type]
    gold = torch_conv(case, **promote(t))  # type: ignore[arg-type]
    tolerance.check(prop, cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(1,), depthwise=False), dtype=dtypes)
@example(case=EDGE_CONVS[4], dtype=torch.float64)
def test_conv1d_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """ConvNN in conv_config's configuration equals F.conv1d."""
    _conv_property("test_conv1d_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(2,), depthwise=False), dtype=dtypes)
@example(case=EDGE_CONVS[0], dtype=torch.float64)
@example(case=EDGE_CONVS[2], dtype=torch.float32)
@example(case=EDGE_CONVS[3], dtype=torch.float64)
def test_conv2d_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """ConvNN in conv_config's configuration equals F.conv2d."""
    _conv_property("test_conv2d_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(3,), depthwise=False), dtype=dtypes)
@example(case=EDGE_CONVS[5], dtype=torch.float64)
def test_conv3d_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """ConvNN in conv_config's configuration equals F.conv3d."""
    _conv_property("test_conv3d_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(depthwise=True), dtype=dtypes)
@example(case=EDGE_CONVS[1], dtype=torch.float64)
def test_depthwise_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """Depthwise convolution (groups = C_in, channel multiplier >= 1) equals F.conv*d (SPEC §3.2)."""
    _conv_property("test_depthwise_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(1, 2), paddings=("same",)), dtype=dtypes)
def test_same_padding_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """padding='same' (even kernels put the extra point on the high side) equals F.conv*d."""
    _conv_property("test_same_padding_exact", impl, case, dtype, device)


@given(
    case=conv_cases(dims=(1, 2, 3)), dtype=dtypes, mode=st.sampled_from(("zeros", "reflect", "replicate", "circular"))
)
@example(case=EDGE_CONVS[1], dtype=torch.float64, mode="reflect")
def test_from_conv_module(case: ConvCase, dtype: torch.dtype, mode: str) -> None:
    """cr.from_conv(nn.ConvNd) computes the module's function, every padding mode included."""
    if mode != "zeros" and case.padding in ("same", "valid"):
        mode = "zeros"  # PyTorch pads non-zero modes only for int/tuple padding here; keep the case valid
    if mode in ("reflect", "circular"):
        pads = (case.padding,) * case.dims if isinstance(case.padding, int) else case.padding
        if any(p > s - (1 if mode == "reflect" else 0) for p, s in zip(pads, case.spatial)):  # type: ignore[operator]
            mode = "replicate"  # reflect needs padding < size, circular padding <= size
    conv = case.module(dtype, padding_mode=mode)
    layer = cr.from_conv(conv)
    x = case.tensors(dtype)["x"]
    with torch.no_grad():
        cand, base = layer(x), conv(x)
        gold = copy.deepcopy(conv).double()(x.double())
    tolerance.check("test_from_conv_module", cand, base, gold, dtype=dtype, reduction=case.reduction, case=(case, mode))


@settings(max_examples=50)  # each example builds two modules; 50 keep the file under budget
@given(case=conv_cases(dims=(2,)))
def test_from_conv_layer_gradients(case: ConvCase) -> None:
    """from_conv layers give the module's gradients for input, weight and bias in float64."""
    conv = case.module(torch.float64)
    layer = cr.from_conv(conv)
    x = case.tensors(torch.float64)["x"]
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    cot = torch.randn(conv(x).shape, generator=torch.Generator().manual_seed(case.seed), dtype=torch.float64)
    layer(x1).backward(cot)
    conv(x2).backward(cot)
    cand = {"x": x1.grad, "weight": layer.weight.grad, "bias": layer.bias.grad if case.bias else None}  # type: ignore[union-attr]
    base = {"x": x2.grad, "weight": conv.weight.grad.reshape(layer.weight.shape), "bias": conv.bias.grad if case.bias else None}  # type: ignore[union-attr]
    tolerance.check_gradients(
        "test_from_conv_layer_gradients",
        cand,
        base,
        base,
        dtype=torch.float64,
        reductions=case.gradient_reductions(cot[0, 0].numel()),
        case=case,
    )
