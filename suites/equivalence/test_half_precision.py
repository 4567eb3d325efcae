"""float16 and bfloat16 at large magnitudes: sums that overflow unless widened.

The suite's inputs keep float16 within 1e-2 to 10 (`suites.inputs`), where a score computed in
float16 itself stays finite, so an implementation that scores or sums in half precision passes
them all. Here the tokens are large: in float16 (largest finite 65504) a dot product or squared
distance of C channels at magnitude 200-500 overflows, so only a computation widened to float32
(as PyTorch's attention on the CPU, and the reference, do) stays finite; bfloat16 runs at
magnitudes up to 1e17, where products reach 1e34 and sums of them a few times that, with its 8
significant bits. The output itself stays representable (a convex combination of the values, or
a sum of a few of them), and the rule is the suite's (docs/error-model.md): gold in float64 on the
half-precision inputs promoted, perturbed gold, base the trusted operator in the test dtype
(SDPA) or the oracle in float32 (what a widened computation does) rounded to the test dtype.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import naive_convnn
from suites import tolerance
from suites.equivalence._common import DEVICES, gold_pair, reject, skip_outside
from suites.implementations import Implementation, Shapes
from suites.inputs import randn
from suites.ties import image_ambiguity

HALF = (torch.float16, torch.bfloat16)
#: Token magnitudes per dtype: float16 products of a few channels overflow 65504; bfloat16's
#: stay below float32's largest finite value (3.4e38) after summing.
MAGNITUDES = {torch.float16: (200.0, 300.0, 500.0), torch.bfloat16: (1e4, 1e10, 1e17)}


@st.composite
def _large(draw: st.DrawFn) -> tuple[torch.dtype, float]:
    dtype = draw(st.sampled_from(HALF))
    return dtype, draw(st.sampled_from(MAGNITUDES[dtype]))


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=30)  # the oracle's Python loops
@given(
    drawn=_large(),
    similarity=st.sampled_from(("dot", "scaled_dot", "euclidean", "cosine")),
    rho=st.sampled_from(("ones", "softmax")),
    c=st.integers(2, 6),
    n=st.integers(2, 16),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_feature_basis_at_large_magnitudes(
    impl: Implementation, device: str, drawn: tuple[torch.dtype, float], similarity: str, rho: str,
    c: int, n: int, frac: float, seed: int,
) -> None:
    """Feature-basis ConvNN (sum kernel) on tokens whose scores overflow float16: equals the
    oracle (float64 gold, float32 oracle as base)."""
    dtype, magnitude = drawn
    k = max(1, round(frac * n))
    config = cr.ConvNNConfig(k=k, basis="feature", similarity=similarity, rho=rho, kernel="sum")  # type: ignore[arg-type]
    shapes = Shapes(form="image", batch=1, channels=c, spatial=(n,))
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=1, shapes=shapes)
    x = (randn((1, c, n), seed, torch.float64) * magnitude).to(dtype).to(device)
    reject(impl, image_ambiguity(x, config, scored_dim=c + 3, dtype=torch.float32))
    cand = impl.convnn(x, None, None, config)

    def oracle(x: torch.Tensor) -> torch.Tensor:
        return naive_convnn(x, None, None, config)

    gold, perturbed = gold_pair(oracle, {"x": x}, seed)
    base = oracle(x.detach().cpu().float()).to(dtype)
    tolerance.check(
        "test_feature_basis_at_large_magnitudes", cand, base, gold, dtype=dtype, reduction=k * c + c,
        case={"dtype": str(dtype), "magnitude": magnitude, "config": config, "c": c, "n": n, "seed": seed},
        device=device, perturbed=perturbed,
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)
@given(
    drawn=_large(), nq=st.integers(1, 12), nk=st.integers(1, 12), d=st.integers(2, 8), dv=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_dense_attention_at_large_magnitudes(
    impl: Implementation, device: str, drawn: tuple[torch.dtype, float], nq: int, nk: int, d: int, dv: int, seed: int
) -> None:
    """Dense scaled-dot attention on queries and keys whose products overflow float16 (and reach
    1e34 in bfloat16): equals SDPA in the test dtype's rule."""
    dtype, magnitude = drawn
    config = cr.ConvNNConfig(k=nk, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum")
    shapes = Shapes(form="attention", batch=1, nq=nq, nk=nk, dim=d, vdim=dv, self_attention=False)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, shapes=shapes)
    q = (randn((1, nq, d), seed, torch.float64) * magnitude).to(dtype).to(device)
    k = (randn((1, nk, d), seed + 1, torch.float64) * magnitude).to(dtype).to(device)
    v = randn((1, nk, dv), seed + 2, dtype, device)
    cand = impl.attention(q, k, v, config)
    base = F.scaled_dot_product_attention(q, k, v)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)

    gold, perturbed = gold_pair(sdpa, {"q": q, "k": k, "v": v}, seed)
    tolerance.check(
        "test_dense_attention_at_large_magnitudes", cand, base, gold, dtype=dtype, reduction=nk * (d + dv),
        case={"dtype": str(dtype), "magnitude": magnitude, "nq": nq, "nk": nk, "d": d, "dv": dv, "seed": seed},
        device=device, perturbed=perturbed,
    )
    assert math.isfinite(float(gold.abs().max())), "gold is finite by construction"
