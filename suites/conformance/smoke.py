"""Four small properties, image and attention forms, for testing the conformance runner itself
(`suites/test_conformance.py`) in seconds rather than minutes.

Not collected by ``pytest suites`` (the name does not match ``test_*.py``); the runner names the
file explicitly: ``python -m suites.conformance --impl SPEC --properties suites/conformance/smoke.py``.
They use the suite's error model and messages (`suites.tolerance`), so the report reads like one
of the real suite. Which implementation fails which property: see the tables in the tests.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import naive_attention
from suites import tolerance
from suites.implementations import Implementation, Shapes

SMOKE = settings(max_examples=6, deadline=None)
DTYPE = torch.float64


def _randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def _skip_outside(impl: Implementation, config: ConvNNConfig, form: str, **kw: object) -> None:
    reason = impl.capabilities.reason(config, form=form, dtype=DTYPE, device="cpu", **kw)  # type: ignore[arg-type]
    if reason is not None:
        pytest.skip(f"{impl.name}: {reason}")


def _conv_property(prop: str, impl: Implementation, kernel: tuple[int, ...], padding: int, c: tuple[int, int], spatial: tuple[int, ...], seed: int) -> None:
    """impl.convnn in `conv_config`'s configuration against ``F.conv*d`` (base: float64 conv,
    gold: the same; the inputs are float64 already)."""
    d = len(kernel)
    config = cr.conv_config(kernel, spatial_dims=d, padding=padding)
    _skip_outside(impl, config, "image", spatial_dims=d, shapes=Shapes(form="image", batch=1, channels=c[0], spatial=spatial))
    case = {"kernel": kernel, "padding": padding, "channels": c, "spatial": spatial, "seed": seed}
    x, w, b = _randn((1, c[0], *spatial), seed), _randn((c[1], c[0], *kernel), seed + 1), _randn((c[1],), seed + 2)
    cand = impl.convnn(x, w.reshape(c[1], c[0], -1), b, config)
    gold = (F.conv1d, F.conv2d, F.conv3d)[d - 1](x, w, b, padding=padding)
    tolerance.check(prop, cand, gold, gold, dtype=DTYPE, reduction=c[0] * w[0, 0].numel(), case=case)


@SMOKE
@given(kh=st.integers(2, 3), kw=st.integers(2, 3), c=st.tuples(st.integers(1, 3), st.integers(1, 3)), h=st.integers(3, 6), w=st.integers(3, 6), seed=st.integers(0, 2**16))
def test_conv2d_padded(impl: Implementation, kh: int, kw: int, c: tuple[int, int], h: int, w: int, seed: int) -> None:
    """A 2-D convolution with zero padding 1."""
    _conv_property("test_conv2d_padded", impl, (kh, kw), 1, c, (h, w), seed)


@SMOKE
@given(k=st.integers(2, 4), c=st.tuples(st.integers(1, 3), st.integers(1, 3)), n=st.integers(4, 9), seed=st.integers(0, 2**16))
def test_conv1d_unpadded(impl: Implementation, k: int, c: tuple[int, int], n: int, seed: int) -> None:
    """A 1-D convolution without padding."""
    _conv_property("test_conv1d_unpadded", impl, (k,), 0, c, (n,), seed)


@SMOKE
@given(nq=st.integers(2, 5), nk=st.integers(2, 5), dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_attention_dense(impl: Implementation, nq: int, nk: int, dim: int, seed: int) -> None:
    """Dense ConvNN attention (scaled dot, softmax, sum, k = Nk) against SDPA."""
    config = ConvNNConfig(k=nk, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum")
    _skip_outside(impl, config, "attention", shapes=Shapes(form="attention", batch=2, nq=nq, nk=nk, dim=dim, vdim=3, self_attention=False))
    q, k, v = _randn((2, nq, dim), seed), _randn((2, nk, dim), seed + 1), _randn((2, nk, 3), seed + 2)
    cand = impl.attention(q, k, v, config)
    gold = F.scaled_dot_product_attention(q, k, v)
    case = {"nq": nq, "nk": nk, "dim": dim, "seed": seed}
    tolerance.check("test_attention_dense", cand, gold, gold, dtype=DTYPE, reduction=nk * dim, case=case)


@SMOKE
@given(nq=st.integers(1, 4), nk=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_attention_ties(impl: Implementation, nq: int, nk: int, seed: int) -> None:
    """Every key equal, k = 1: the tie rule picks the lowest index, so every output is v[:, 0]
    (base and gold: the naive oracle)."""
    config = ConvNNConfig(k=1, basis="feature", similarity="dot", rho="ones", kernel="sum")
    _skip_outside(impl, config, "attention", shapes=Shapes(form="attention", batch=1, nq=nq, nk=nk, dim=2, vdim=3, self_attention=False))
    q = _randn((1, nq, 2), seed)
    k = _randn((1, 1, 2), seed + 1).expand(1, nk, 2).contiguous()
    v = _randn((1, nk, 3), seed + 2)
    cand = impl.attention(q, k, v, config)
    gold = naive_attention(q, k, v, config)
    case = {"nq": nq, "nk": nk, "seed": seed}
    tolerance.check("test_attention_ties", cand, gold, gold, dtype=DTYPE, reduction=1, case=case)
