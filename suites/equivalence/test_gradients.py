"""Gradients (SPEC §4): the gold/base/cand rule on every gradient in every dtype, and
``torch.autograd.gradcheck`` in float64 on small inputs whose k-th and (k+1)-th scores are far
apart, so finite differences never flip a selection."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings

import convnn_ref as cr
from convnn_ref.naive import naive_convnn
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, promote, skip_outside, torch_conv, with_grads
from suites.implementations import Implementation
from suites.strategies import AttentionCase, ConvCase, GeneralCase, attention_cases, conv_cases, general_cases, randn


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50)  # three forward+backward passes per example (~0.1 s)
@given(case=conv_cases(dims=(1, 2)), dtype=dtypes)
def test_conv_gradients_every_dtype(impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype) -> None:
    """Gradients of the exact conv configuration for x, weight and bias meet the rule against F.conv*d."""
    config = case.config()
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=case.dims, backward=True)
    t = case.tensors(dtype, device)

    def cand_fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return impl.convnn(x, weight.reshape(weight.shape[0], weight.shape[1], -1), bias, config)

    _, cand_g = with_grads(cand_fn, t, case.seed, dtype)
    _, base_g = with_grads(lambda **kw: torch_conv(case, **kw), t, case.seed, dtype)
    gold, gold_g = with_grads(lambda **kw: torch_conv(case, **kw), promote(t), case.seed, dtype)
    reductions = case.gradient_reductions(gold[0, 0].numel())
    tolerance.check_gradients(
        "test_conv_gradients_every_dtype", cand_g, base_g, gold_g, dtype=dtype, reductions=reductions, case=case, device=device
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50)  # three forward+backward passes per example (~0.1 s)
@given(case=attention_cases(masks=("none", "causal")), dtype=dtypes)
def test_attention_gradients_every_dtype(
    impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype
) -> None:
    """Gradients of dense ConvNN attention for q, k and v meet the rule against SDPA."""
    config = cr.ConvNNConfig(
        k=case.nk, basis="feature", similarity="scaled_dot", scale=case.scale, rho="softmax", kernel="sum"
    )
    allowed = case.allowed(device)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, masked=allowed is not None, backward=True)
    if allowed is not None:
        assume(bool(allowed.any(-1).all()))  # SDPA's gradient is NaN on fully masked rows
    t = case.tensors(dtype, device)
    t = {**t, "k": t["k"].clone()}  # separate leaves even in self-attention

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = None if allowed is None else allowed.to(q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=case.scale)

    _, cand_g = with_grads(lambda q, k, v: impl.attention(q, k, v, config, allowed=allowed), t, case.seed, dtype)
    _, base_g = with_grads(sdpa, t, case.seed, dtype)
    _, gold_g = with_grads(sdpa, promote(t), case.seed, dtype)
    red = case.gradient_reductions
    tolerance.check_gradients(
        "test_attention_gradients_every_dtype", cand_g, base_g, gold_g, dtype=dtype, reductions=red, case=case, device=device
    )


def _gap_ok(q: torch.Tensor, k: torch.Tensor, topk: int, scale: float | None, gap: float) -> bool:
    s = (q.double() @ k.double().transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if topk >= s.shape[-1]:
        return True
    o = s.sort(dim=-1, descending=True).values
    return bool(((o[..., topk - 1] - o[..., topk]) > gap).all())


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",), max_len=6), dtype=dtypes)
def test_kvt_gradients_every_dtype(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """KVT gradients (k < N) meet the rule against the paper's dense masked formula, given a score gap."""
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, backward=True)
    t = case.tensors(dtype, device)
    t = {**t, "k": t["k"].clone()}
    assume(_gap_ok(t["q"], t["k"], case.topk, case.scale, 64 * tolerance.eps(dtype) * (1 + case.dim)))

    def kvt(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return cr.kvt_attention(q, k, v, case.topk, case.scale)

    _, cand_g = with_grads(lambda q, k, v: impl.attention(q, k, v, config), t, case.seed, dtype)
    _, base_g = with_grads(kvt, t, case.seed, dtype)
    _, gold_g = with_grads(kvt, promote(t), case.seed, dtype)
    red = case.gradient_reductions
    tolerance.check_gradients(
        "test_kvt_gradients_every_dtype", cand_g, base_g, gold_g, dtype=dtype, reductions=red, case=case, device=device
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=25)  # gradcheck costs 2 forwards per input element; 25 small examples ~ 3 s
@given(case=attention_cases(masks=("none",), max_len=5))
def test_gradcheck_kvt_attention(impl: Implementation, device: str, case: AttentionCase) -> None:
    """torch.autograd.gradcheck passes for KVT attention in float64 when the k-th score gap exceeds the step."""
    case = AttentionCase(
        **{**case.__dict__, "batch": 1, "heads": 1, "dim": min(case.dim, 3), "vdim": min(case.vdim, 2)}
    )
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=torch.float64, device=device, backward=True)
    t = case.tensors(torch.float64, device)
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (t["q"], t["k"], t["v"]))
    assume(_gap_ok(q, k, case.topk, case.scale, 1e-2))
    assert torch.autograd.gradcheck(lambda a, b, c: impl.attention(a, b, c, config), (q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=25)  # gradcheck costs 2 forwards per input element; 25 small examples ~ 3 s
@given(case=conv_cases(dims=(1, 2), max_size=3).filter(lambda c: c.batch == 1 and c.in_channels * c.out_channels <= 6))
def test_gradcheck_conv(impl: Implementation, device: str, case: ConvCase) -> None:
    """torch.autograd.gradcheck passes for the exact conv configuration in float64 (x, weight, bias)."""
    config = case.config()
    skip_outside(impl, config, form="image", dtype=torch.float64, device=device, spatial_dims=case.dims, backward=True)
    t = case.tensors(torch.float64, device)
    w = t["weight"]
    assert w is not None
    leaves = [t["x"], w.reshape(w.shape[0], w.shape[1], -1)] + ([t["bias"]] if case.bias else [])
    leaves = [x.detach().clone().requires_grad_(True) for x in leaves]  # type: ignore[union-attr]
    fn = (lambda x, w, b: impl.convnn(x, w, b, config)) if case.bias else (lambda x, w: impl.convnn(x, w, None, config))
    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)  # the oracle's backward runs through Python loops
@given(case=general_cases(candidates=("all", "grid")))
def test_gradients_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """On any configuration, gradients for x, weight and bias equal the oracle's in float64."""
    c = case.config
    skip_outside(
        impl, c, form="image", dtype=torch.float64, device=device, spatial_dims=len(case.spatial), backward=True
    )
    t = case.tensors(torch.float64, device)
    _, cand_g = with_grads(
        lambda x, weight, bias: impl.convnn(x, weight, bias, c, generator=case.generator()), t, case.seed, torch.float64
    )
    _, gold_g = with_grads(
        lambda x, weight, bias: naive_convnn(x, weight, bias, c, generator=case.generator()),
        promote(t),
        case.seed,
        torch.float64,
    )
    n = math.prod(case.spatial) * case.batch
    red = {"x": c.k * max(case.out_channels, 1) * n, "weight": n, "bias": n}
    tolerance.check_gradients(
        "test_gradients_vs_oracle", cand_g, gold_g, gold_g, dtype=torch.float64, reductions=red, case=case, device=device
    )


@settings(max_examples=30)
@given(case=general_cases(bases=("feature",), candidates=("all",), max_tokens=8))
def test_gradcheck_feature_basis(case: GeneralCase) -> None:
    """gradcheck passes for feature-basis ConvNN in float64 when the selection has a clear score gap."""
    c = case.config
    t = case.tensors(torch.float64)
    x = randn(tuple(t["x"].shape), case.seed, torch.float64) * 3  # type: ignore[union-attr]
    nb = cr.neighbours(x, c)
    full = cr.neighbours(x, c.replace(k=math.prod(case.spatial), self_slot="candidate"))
    kth = nb.score.detach()[..., -1:]
    others = full.score.detach()
    near = ((others - kth).abs() < 1e-3).sum(-1)
    assume(bool((near <= 1).all()))  # only the k-th itself is within the step's reach
    leaves = [x.requires_grad_(True)] + [
        v.detach().clone().requires_grad_(True) for v in (t["weight"], t["bias"]) if v is not None
    ]
    names = ["x"] + [n for n in ("weight", "bias") if t[n] is not None]

    def fn(*args: torch.Tensor) -> torch.Tensor:
        kw = dict(zip(names, args))
        return cr.convnn(kw["x"], kw.get("weight"), kw.get("bias"), c)

    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-7, atol=1e-5)
