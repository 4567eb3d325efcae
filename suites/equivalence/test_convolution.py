"""Exact convolution and depthwise convolution (docs/semantics.md): ConvNN in `conv_config`'s
configuration is ``F.conv*d``, and `from_conv` layers are the ``nn.ConvNd`` modules they copy,
padding modes included. Every implementation that claims the conv configuration meets the traps
too: kernels past 5x5 (a Euclidean selection is a disc) and inputs much wider than tall
(normalized coordinates are anisotropic)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, gold_pair, skip_outside, torch_conv
from suites.implementations import Implementation, Shapes
from suites.strategies import EDGE_CONVS, ConvCase, conv_cases


def conv_shapes(case: ConvCase) -> Shapes:
    return case.shapes()


def _conv_property(prop: str, impl: Implementation, case: ConvCase, dtype: torch.dtype, device: str) -> None:
    """cand = impl.convnn, base = F.conv*d in dtype, gold = F.conv*d in float64 (and on
    perturbed inputs)."""
    config = case.config()
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=case.dims, shapes=conv_shapes(case))
    t = case.tensors(dtype, device)
    w = t["weight"]
    assert w is not None
    cand = impl.convnn(t["x"], w.reshape(w.shape[0], w.shape[1], -1), t["bias"], config)
    base = torch_conv(case, t["x"], w, t["bias"])  # type: ignore[arg-type]
    gold, perturbed = gold_pair(lambda **kw: torch_conv(case, **kw), t, case.seed)
    tolerance.check(
        prop, cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device, perturbed=perturbed
    )


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


#: The traps as ready-made cases: a 7x7 kernel ('same'), and a 4x10 input with a 3x3 kernel.
TRAP_7X7 = ConvCase(1, 2, 3, 1, (9, 9), (7, 7), (1, 1), 3, (1, 1), True, 6)
TRAP_4X10 = ConvCase(1, 2, 3, 1, (4, 10), (3, 3), (1, 1), 1, (1, 1), True, 7)


@st.composite
def _large_kernel_cases(draw: st.DrawFn) -> ConvCase:
    """2-D cases with kernels of 6 to 9 on at least one axis."""
    case = draw(conv_cases(dims=(2,), depthwise=False))
    kernel = tuple(draw(st.integers(6, 9)) if axis == 0 or draw(st.booleans()) else k for axis, k in enumerate(case.kernel))
    span = [dl * (k - 1) + 1 for k, dl in zip(kernel, case.dilation)]
    spatial = tuple(max(s, sp) for s, sp in zip(case.spatial, span))
    return ConvCase(**{**case.__dict__, "kernel": kernel, "spatial": spatial})


@st.composite
def _anisotropic_cases(draw: st.DrawFn) -> ConvCase:
    """2-D cases on inputs at least twice as wide as tall (or tall as wide)."""
    case = draw(conv_cases(dims=(2,), depthwise=False, max_kernel=5))
    short = draw(st.integers(3, 6))
    spatial = (short, draw(st.integers(2 * short, 3 * short)))
    if draw(st.booleans()):
        spatial = spatial[::-1]
    span = [dl * (k - 1) + 1 for k, dl in zip(case.kernel, case.dilation)]
    spatial = tuple(max(s, sp) for s, sp in zip(spatial, span))
    return ConvCase(**{**case.__dict__, "spatial": spatial})


@pytest.mark.parametrize("device", DEVICES)
@given(case=_large_kernel_cases(), dtype=dtypes)
@example(case=TRAP_7X7, dtype=torch.float64)
def test_conv2d_large_kernels_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """Kernels of 6 to 9 (7x7 among the examples) equal F.conv2d: the window is selected, not a Euclidean disc."""
    _conv_property("test_conv2d_large_kernels_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=_anisotropic_cases(), dtype=dtypes)
@example(case=TRAP_4X10, dtype=torch.float64)
def test_conv2d_anisotropic_inputs_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """Inputs 2-3x wider than tall (4x10 among the examples) equal F.conv2d: positions are not squeezed per axis."""
    _conv_property("test_conv2d_anisotropic_inputs_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(depthwise=True), dtype=dtypes)
@example(case=EDGE_CONVS[1], dtype=torch.float64)
def test_depthwise_exact(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """Depthwise convolution (groups = C_in, channel multiplier >= 1) equals F.conv*d (docs/semantics.md)."""
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
    gold_conv = copy.deepcopy(conv).double()
    with torch.no_grad():
        cand, base = layer(x), conv(x)
    gold, perturbed = gold_pair(lambda x: gold_conv(x), {"x": x}, case.seed)
    tolerance.check(
        "test_from_conv_module", cand, base, gold, dtype=dtype, reduction=case.reduction, case=(case, mode), perturbed=perturbed
    )


@settings(max_examples=50)  # each example builds two modules; 50 keep the file under budget
@given(case=conv_cases(dims=(2,)), input_grad=st.booleans())
def test_from_conv_layer_gradients(case: ConvCase, input_grad: bool) -> None:
    """from_conv layers give the module's gradients for input, weight and bias in float64, also
    when the input does not require grad (the first layer of a network)."""
    conv = case.module(torch.float64)
    layer = cr.from_conv(conv)
    x = case.tensors(torch.float64)["x"]
    assert x is not None
    x1, x2 = x.clone().requires_grad_(input_grad), x.clone().requires_grad_(input_grad)
    cot = torch.randn(conv(x).shape, generator=torch.Generator().manual_seed(case.seed), dtype=torch.float64)
    layer(x1).backward(cot)
    conv(x2).backward(cot)
    assert layer.weight is not None and conv.weight.grad is not None
    cand = {"x": x1.grad, "weight": layer.weight.grad, "bias": layer.bias.grad if layer.bias is not None else None}
    base = {
        "x": x2.grad,
        "weight": conv.weight.grad.reshape(layer.weight.shape),
        "bias": conv.bias.grad if conv.bias is not None else None,
    }
    tolerance.check_gradients(
        "test_from_conv_layer_gradients",
        cand,
        base,
        base,
        dtype=torch.float64,
        reductions=case.gradient_reductions(cot[0, 0].numel()),
        case=(case, {"input_grad": input_grad}),
    )
