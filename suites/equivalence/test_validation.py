"""Bad inputs raise ``ValueError`` or ``TypeError`` naming the argument (never a deep torch error
or a silent clamp). Tensor-level checks go through the implementation under test
(`expect_named_error`: accepting bad input fails; refusing it with another exception is an
error-convention finding, a failure only for implementations that declare ``named_errors``);
config-level checks through `ConvNNConfig` and the constructors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convnn_ref as cr
from suites.equivalence._common import attention_shapes, expect_named_error, image_shapes, skip_outside
from suites.implementations import Implementation
from suites.strategies import randn

F64 = torch.float64


def _image(
    impl: Implementation,
    prop: str,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    config: cr.ConvNNConfig,
    errors: type[Exception] | tuple[type[Exception], ...],
    names: str,
    **kw: object,
) -> None:
    """impl.convnn on a bad input must raise ``errors`` naming ``names``; skipped (with the
    reason) when the config is outside the implementation's capabilities."""
    skip_outside(impl, config, form="image", dtype=F64, device="cpu", spatial_dims=max(x.dim() - 2, 1), shapes=image_shapes(x))
    case = {"x": tuple(x.shape), "weight": None if weight is None else tuple(weight.shape), "config": config, **kw}
    expect_named_error(impl, prop, lambda: impl.convnn(x, weight, bias, config, **kw), errors, names, case=case)  # type: ignore[arg-type]


def _x(shape: tuple[int, ...] = (1, 2, 5), dtype: torch.dtype = F64) -> torch.Tensor:
    return randn(shape, 0, dtype)


@given(n=st.integers(1, 10), extra=st.integers(1, 3))
def test_k_larger_than_candidates_is_an_error(impl: Implementation, n: int, extra: int) -> None:
    """k above the candidate count raises ValueError naming k (no silent clamp)."""
    config = cr.ConvNNConfig(k=n + extra, kernel="sum")
    _image(impl, "test_k_larger_than_candidates_is_an_error", _x((1, 2, n)), None, None, config, ValueError, r"\bk\b")


def test_k_larger_than_keys_is_an_error(impl: Implementation) -> None:
    """In the sequence form, k above the number of keys raises ValueError naming k."""
    q = _x((1, 3, 2))
    config = cr.kvt_config(4)
    skip_outside(impl, config, form="attention", dtype=F64, device="cpu", shapes=attention_shapes(q, q, q))
    expect_named_error(impl, "test_k_larger_than_keys_is_an_error", lambda: impl.attention(q, q, q, config), ValueError, r"\bk\b")


def test_groups_not_dividing_channels(impl: Implementation) -> None:
    """groups that do not divide C_in raise ValueError naming groups."""
    config = cr.ConvNNConfig(k=2, kernel="grouped", groups=2)
    _image(impl, "test_groups_not_dividing_channels", _x((1, 3, 5)), randn((2, 1, 2), 1, F64), None, config, ValueError, "groups")


def test_wrong_rank_input(impl: Implementation) -> None:
    """An input without a spatial axis raises ValueError naming x."""
    _image(impl, "test_wrong_rank_input", _x((2, 5)), None, None, cr.ConvNNConfig(k=1, kernel="sum"), ValueError, r"\bx\b")


def test_weight_shape_mismatch(impl: Implementation) -> None:
    """A weight whose last axis is not k raises ValueError naming weight."""
    _image(impl, "test_weight_shape_mismatch", _x(), randn((3, 2, 4), 1, F64), None, cr.ConvNNConfig(k=2), ValueError, "weight")


def test_dtype_mismatch(impl: Implementation) -> None:
    """A weight of another dtype raises TypeError naming weight."""
    w = randn((3, 2, 2), 1, torch.float32)
    _image(impl, "test_dtype_mismatch", _x(), w, None, cr.ConvNNConfig(k=2), TypeError, "weight")


def test_device_mismatch(impl: Implementation) -> None:
    """A weight on another device raises ValueError naming weight."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to put the weight on another device than x")
    w = randn((3, 2, 2), 1, F64, "cuda")
    _image(impl, "test_device_mismatch", _x(), w, None, cr.ConvNNConfig(k=2), ValueError, "weight")


def test_integer_input_is_a_type_error(impl: Implementation) -> None:
    """An integer input raises TypeError naming x."""
    x = torch.ones(1, 2, 5, dtype=torch.int64)
    _image(impl, "test_integer_input_is_a_type_error", x, None, None, cr.ConvNNConfig(k=1, kernel="sum"), TypeError, r"\bx\b")


@given(lam=st.floats(1.0001, 10.0) | st.floats(-10.0, -0.0001))
def test_hybrid_lambda_outside_unit_interval(lam: float) -> None:
    """hybrid_lambda outside [0, 1] raises ValueError naming it."""
    with pytest.raises(ValueError, match="hybrid_lambda"):
        cr.ConvNNConfig(k=1, basis="hybrid", hybrid_lambda=lam)


@given(n=st.integers(1, 10), extra=st.integers(1, 5))
def test_num_candidates_above_n(impl: Implementation, n: int, extra: int) -> None:
    """Random candidates with r > N raise ValueError naming num_candidates."""
    config = cr.ConvNNConfig(k=1, candidates="random", num_candidates=n + extra, kernel="sum")
    _image(
        impl, "test_num_candidates_above_n", _x((1, 2, n)), None, None, config, ValueError, "num_candidates",
        generator=torch.Generator().manual_seed(0),
    )


@given(p=st.integers(-5, -1))
def test_negative_padding(p: int) -> None:
    """Negative padding raises ValueError naming padding, in the config and in conv_config."""
    with pytest.raises(ValueError, match="padding"):
        cr.ConvNNConfig(k=1, basis="position", padding=p)
    with pytest.raises(ValueError, match="padding"):
        cr.conv_config(3, spatial_dims=1, padding=p)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("basis", "positon"),
        ("metric", "manhattan"),
        ("similarity", "cos"),
        ("candidates", "some"),
        ("rho", "relu"),
        ("kernel", "dense"),
        ("slot_order", "random"),
        ("coord_encoding", "yes"),
        ("border", "reflect"),
    ],
)
def test_unknown_option_values(field: str, value: str) -> None:
    """An unknown option value raises ValueError naming the option."""
    with pytest.raises(ValueError, match=field):
        cr.ConvNNConfig(k=1, **{field: value})  # type: ignore[arg-type]


def test_unknown_option_names() -> None:
    """An unknown option name raises TypeError naming it; conv_config's convention is checked by name."""
    with pytest.raises(TypeError, match="kernal_size"):
        cr.ConvNNConfig(k=1, kernal_size=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="convention"):
        cr.conv_config(3, spatial_dims=1, convention="paper")  # type: ignore[arg-type]


def test_k_below_one() -> None:
    """k < 1 raises ValueError naming k; a non-int k raises TypeError."""
    with pytest.raises(ValueError, match="k"):
        cr.ConvNNConfig(k=0)
    with pytest.raises(TypeError, match="k"):
        cr.ConvNNConfig(k=2.0)  # type: ignore[arg-type]


def test_random_candidates_need_a_generator(impl: Implementation) -> None:
    """Random candidates without a generator raise ValueError naming the generator."""
    config = cr.ConvNNConfig(k=1, candidates="random", num_candidates=2, kernel="sum")
    _image(impl, "test_random_candidates_need_a_generator", _x(), None, None, config, ValueError, "generator")


def test_mask_wrong_dtype(impl: Implementation) -> None:
    """A non-boolean `allowed` mask raises TypeError naming allowed."""
    q = _x((1, 3, 2))
    config = cr.kvt_config(2)
    skip_outside(impl, config, form="attention", dtype=F64, device="cpu", masked=True, shapes=attention_shapes(q, q, q))
    mask = torch.ones(1, 3, 3)
    expect_named_error(impl, "test_mask_wrong_dtype", lambda: impl.attention(q, q, q, config, allowed=mask), TypeError, "allowed")


def test_from_conv_refuses_transposed() -> None:
    """from_conv refuses a ConvTranspose module with a TypeError naming conv."""
    with pytest.raises(TypeError, match="conv"):
        cr.from_conv(torch.nn.ConvTranspose2d(1, 1, 3))  # type: ignore[arg-type]
