"""The documented traps (docs/semantics.md) as properties that assert the mismatch *exists*: if one of
these starts passing as "equal", either the semantics changed or the test lost its teeth. Each
trap has a control that pins the exact configuration on the same input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import resolve_geometry
from suites import tolerance
from suites.strategies import randn

F64 = torch.float64
SEEDS = st.integers(0, 2**31 - 1)


def _conv_error(h: int, w: int, kernel: int, convention: str, seed: int, **config_kw: object) -> float:
    """max |ConvNN - F.conv2d| in float64 for a 'same'-padded square kernel on an h x w input."""
    x = randn((1, 2, h, w), seed, F64)
    weight = randn((3, 2, kernel, kernel), seed + 1, F64)
    config = cr.conv_config(kernel, spatial_dims=2, padding=kernel // 2, convention=convention)  # type: ignore[arg-type]
    if config_kw:
        config = config.replace(**config_kw)
    y = cr.convnn(x, weight.reshape(3, 2, -1), None, config)
    return float((y - F.conv2d(x, weight, padding=kernel // 2)).abs().max())


def _assert_mismatch(prop: str, err: float, exact_err: float, case: object) -> None:
    if not err > 1e-3:
        raise AssertionError(
            tolerance.describe(
                prop, case, "the trap did not trigger: the configuration matched F.conv2d", [f"error {err:.3e}"]
            )
        )
    if not exact_err < 1e-10:
        raise AssertionError(
            tolerance.describe(prop, case, "the exact control failed on the same input", [f"error {exact_err:.3e}"])
        )


@given(h=st.integers(7, 10), w=st.integers(7, 10), seed=SEEDS)
def test_trap_research_convention_at_7x7(h: int, w: int, seed: int) -> None:
    """The research convention (Euclidean, normalized) misses a 7x7 kernel: its selection is a disc, not the window."""
    err = _conv_error(h, w, 7, "research", seed)
    _assert_mismatch(
        "test_trap_research_convention_at_7x7", err, _conv_error(h, w, 7, "exact", seed), {"h": h, "w": w, "seed": seed}
    )


@given(seed=SEEDS)
def test_trap_normalized_coordinates_on_4x10(seed: int) -> None:
    """On a 4x10 input even the 3x3 window is lost under normalized coordinates (anisotropic spacing)."""
    err = _conv_error(4, 10, 3, "research", seed)
    _assert_mismatch(
        "test_trap_normalized_coordinates_on_4x10", err, _conv_error(4, 10, 3, "exact", seed), {"seed": seed}
    )


@given(size=st.integers(5, 9), seed=SEEDS)
def test_trap_research_convention_exact_at_3x3_square(size: int, seed: int) -> None:
    """Control for the traps: on a square input the research convention *is* exact for a 3x3 kernel."""
    err = _conv_error(size, size, 3, "research", seed)
    assert err < 1e-10, tolerance.describe(
        "test_trap_research_convention_exact_at_3x3_square",
        {"size": size, "seed": seed},
        "research convention not exact at 3x3",
        [f"error {err:.3e}"],
    )


@given(h=st.integers(7, 11), w=st.integers(7, 11))
def test_trap_euclidean_metric_selects_a_disc_at_7x7(h: int, w: int) -> None:
    """Euclidean distance on integer positions picks (±4, 0) and drops the corner (3, 3) of a 7x7 window."""
    config = cr.ConvNNConfig(
        k=49, basis="position", metric="euclidean", coordinates="integer", slot_order="offset", padding=3
    )
    geo = resolve_geometry(config, (h, w))
    index, _ = cr.position_table(geo, config, torch.device("cpu"))
    pw = geo.padded[1]
    centre = (h // 2 + 3) * pw + (w // 2 + 3)  # an interior query (without kernel_size every padded point is one)
    offsets = {(int(i) // pw - centre // pw, int(i) % pw - centre % pw) for i in index[centre]}
    ok = (4, 0) in offsets and (3, 3) not in offsets
    assert ok, tolerance.describe(
        "test_trap_euclidean_metric_selects_a_disc_at_7x7",
        {"h": h, "w": w},
        "the 49 nearest points are not a disc",
        [f"offsets {sorted(offsets)}"],
    )


@given(length=st.integers(5, 9), seed=SEEDS)
def test_trap_unscaled_chebyshev_misses_non_square_kernel(length: int, seed: int) -> None:
    """Without per-axis kernel scaling a 3x1 kernel is not "the 3 nearest" under Chebyshev: the output differs from F.conv2d."""
    x = randn((1, 1, length, length), seed, F64)
    weight = randn((1, 1, 3, 1), seed + 1, F64)
    exact = cr.conv_config((3, 1), spatial_dims=2, padding=(1, 0))
    ref = F.conv2d(x, weight, padding=(1, 0))
    err = float((cr.convnn(x, weight.reshape(1, 1, 3), None, exact.replace(kernel_scaled=False)) - ref).abs().max())
    exact_err = float((cr.convnn(x, weight.reshape(1, 1, 3), None, exact) - ref).abs().max())
    _assert_mismatch(
        "test_trap_unscaled_chebyshev_misses_non_square_kernel", err, exact_err, {"length": length, "seed": seed}
    )
