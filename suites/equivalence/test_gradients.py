"""Gradients (docs/error-model.md): the gold/base/cand rule on every gradient in every dtype, each
gradient with its own reduction length, and ``torch.autograd.gradcheck`` in float64 on small
inputs whose k-th and (k+1)-th scores are far apart, so finite differences never flip a selection."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import naive_convnn
from suites import tolerance
from suites.equivalence._common import (
    DEVICES,
    dtypes,
    options,
    promote,
    reject,
    skip_outside,
    torch_conv,
    unmoved_score_gain,
    with_grads,
)
from suites.equivalence.test_convolution import conv_shapes
from suites.implementations import Implementation
from suites.strategies import AttentionCase, ConvCase, GeneralCase, attention_cases, conv_cases, general_cases
from suites.ties import attention_score_gain, image_ambiguity

#: Which inputs take a gradient: all of them, or all but the first (the input of a first layer).
GRAD_INPUTS = st.booleans()


def _leaves(names: tuple[str, ...], input_grad: bool) -> tuple[str, ...]:
    return names if input_grad else names[1:]


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50)  # four forward+backward passes per example (~0.1 s)
@given(case=conv_cases(dims=(1, 2)), dtype=dtypes, input_grad=GRAD_INPUTS)
def test_conv_gradients_every_dtype(
    impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype, input_grad: bool
) -> None:
    """Gradients of the exact conv configuration for x (when it requires grad), weight and bias meet the rule against F.conv*d."""
    config = case.config()
    skip_outside(
        impl, config, form="image", dtype=dtype, device=device, spatial_dims=case.dims, backward=True, shapes=conv_shapes(case)
    )
    t = case.tensors(dtype, device)
    wanted = _leaves(("x", "weight", "bias"), input_grad)

    def cand_fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return impl.convnn(x, weight.reshape(weight.shape[0], weight.shape[1], -1), bias, config)

    def conv(**kw: torch.Tensor) -> torch.Tensor:
        return torch_conv(case, **kw)  # type: ignore[arg-type]

    _, cand_g = with_grads(cand_fn, t, case.seed, dtype, requires_grad=wanted)
    _, base_g = with_grads(conv, t, case.seed, dtype, requires_grad=wanted)
    gold, gold_g = with_grads(conv, promote(t), case.seed, dtype, requires_grad=wanted)
    _, perturbed_g = with_grads(conv, tolerance.perturb(t, case.seed), case.seed, dtype, requires_grad=wanted)
    tolerance.check_gradients(
        "test_conv_gradients_every_dtype",
        cand_g,
        base_g,
        gold_g,
        dtype=dtype,
        reductions=case.gradient_reductions(gold[0, 0].numel()),
        case=(case, {"input_grad": input_grad}),
        device=device,
        perturbed=perturbed_g,
    )


def _sdpa_grads(
    impl: Implementation, prop: str, case: AttentionCase, dtype: torch.dtype, device: str, config: cr.ConvNNConfig,
    reference: object, allowed: torch.Tensor | None,
) -> None:
    """cand = impl.attention, base = ``reference`` in dtype, gold = ``reference`` in float64 (and
    on perturbed inputs); gradients for q, k and v."""
    t = case.tensors(dtype, device)
    t = {**t, "k": t["k"].clone()}  # separate leaves even in self-attention
    ref = reference  # (q, k, v) -> output

    def cand_fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return impl.attention(q, k, v, config, allowed=allowed)

    _, cand_g = with_grads(cand_fn, t, case.seed, dtype)
    _, base_g = with_grads(ref, t, case.seed, dtype)  # type: ignore[arg-type]
    _, gold_g = with_grads(ref, promote(t), case.seed, dtype)  # type: ignore[arg-type]
    _, perturbed_g = with_grads(ref, tolerance.perturb(t, case.seed), case.seed, dtype)  # type: ignore[arg-type]
    tolerance.check_gradients(
        prop, cand_g, base_g, gold_g, dtype=dtype, reductions=case.gradient_reductions, case=case, device=device,
        perturbed=perturbed_g, score_gain=attention_score_gain(t["q"], t["k"], t["v"], case.scale),
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50)  # four forward+backward passes per example (~0.1 s)
@given(case=attention_cases(masks=("none", "causal")), dtype=dtypes)
def test_attention_gradients_every_dtype(
    impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype
) -> None:
    """Gradients of dense ConvNN attention for q, k and v meet the rule against SDPA."""
    config = cr.ConvNNConfig(
        k=case.nk, basis="feature", similarity="scaled_dot", scale=case.scale, rho="softmax", kernel="sum"
    )
    allowed = case.allowed(device)
    skip_outside(
        impl, config, form="attention", dtype=dtype, device=device, masked=allowed is not None, backward=True, shapes=case.shapes()
    )
    if allowed is not None and not bool(allowed.any(-1).all()):
        reject(impl, "fully masked row: SDPA's gradient is NaN there")

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = None if allowed is None else allowed.to(q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=case.scale)

    _sdpa_grads(impl, "test_attention_gradients_every_dtype", case, dtype, device, config, sdpa, allowed)


def _clear_selection(q: torch.Tensor, k: torch.Tensor, topk: int, scale: float | None, dtype: torch.dtype) -> bool:
    """Every row's k-th and (k+1)-th scores are further apart than rounding in ``dtype`` can close."""
    s = (q.double().cpu() @ k.double().cpu().transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    return bool(tolerance.clear_rows(s, topk, tolerance.score_gap(s, dtype, q.shape[-1])).all())


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",), max_len=6), dtype=dtypes)
def test_kvt_gradients_every_dtype(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """KVT gradients (k < N) meet the rule against the paper's dense masked formula, given a score gap."""
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, backward=True, shapes=case.shapes())
    t = case.tensors(dtype, device)
    if not _clear_selection(t["q"], t["k"], case.topk, case.scale, dtype):
        reject(impl, "ties: no score gap at the k-th place")

    def kvt(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return cr.kvt_attention(q, k, v, case.topk, case.scale)

    _sdpa_grads(impl, "test_kvt_gradients_every_dtype", case, dtype, device, config, kvt, None)


def _unit_normal(case: AttentionCase | ConvCase | GeneralCase):  # type: ignore[no-untyped-def]
    """The case with standard-normal inputs: finite differences need smooth, unit-size inputs
    (a zero token sits on the cosine's kink; 1e4 swamps the step)."""
    return dataclasses.replace(case, style="normal", magnitude=1.0)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=25)  # gradcheck costs 2 forwards per input element; 25 small examples ~ 3 s
@given(case=attention_cases(masks=("none",), max_len=5))
def test_gradcheck_kvt_attention(impl: Implementation, device: str, case: AttentionCase) -> None:
    """torch.autograd.gradcheck passes for KVT attention in float64 when the k-th score gap exceeds the step."""
    case = dataclasses.replace(_unit_normal(case), batch=1, heads=1, dim=min(case.dim, 3), vdim=min(case.vdim, 2))
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=torch.float64, device=device, backward=True, shapes=case.shapes())
    t = case.tensors(torch.float64, device)
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (t["q"], t["k"], t["v"]))
    s = (q.detach() @ k.detach().transpose(-2, -1)).cpu()
    if not bool(tolerance.clear_rows(s, case.topk, 1e-2).all()):
        reject(impl, "ties: score gap below the finite-difference reach")
    assert torch.autograd.gradcheck(lambda a, b, c: impl.attention(a, b, c, config), (q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=25)  # gradcheck costs 2 forwards per input element; 25 small examples ~ 3 s
@given(
    case=conv_cases(dims=(1, 2), max_size=3, max_kernel=3).filter(lambda c: c.batch == 1 and c.in_channels * c.out_channels <= 6)
)
def test_gradcheck_conv(impl: Implementation, device: str, case: ConvCase) -> None:
    """torch.autograd.gradcheck passes for the exact conv configuration in float64 (x, weight, bias)."""
    case = _unit_normal(case)
    config = case.config()
    skip_outside(
        impl, config, form="image", dtype=torch.float64, device=device, spatial_dims=case.dims, backward=True,
        shapes=conv_shapes(case),
    )
    t = case.tensors(torch.float64, device)
    w = t["weight"]
    assert w is not None
    leaves = [t["x"], w.reshape(w.shape[0], w.shape[1], -1)] + ([t["bias"]] if case.bias else [])
    leaves = [x.detach().clone().requires_grad_(True) for x in leaves]  # type: ignore[union-attr]
    fn = (lambda x, w, b: impl.convnn(x, w, b, config)) if case.bias else (lambda x, w: impl.convnn(x, w, None, config))
    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)  # the oracle's backward runs through Python loops
@given(case=general_cases(candidates=("all", "grid")), input_grad=GRAD_INPUTS)
def test_gradients_vs_oracle(impl: Implementation, device: str, case: GeneralCase, input_grad: bool) -> None:
    """On any configuration, gradients for x (when it requires grad), weight and bias equal the oracle's in float64."""
    c = case.config
    skip_outside(
        impl, c, form="image", dtype=torch.float64, device=device, spatial_dims=len(case.spatial), backward=True,
        shapes=case.shapes(),
    )
    t = case.tensors(torch.float64, device)
    wanted = _leaves(("x", "weight", "bias"), input_grad or (t["weight"] is None and t["bias"] is None))
    ambiguity = image_ambiguity(
        t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3, distinct_tokens="x" in wanted  # type: ignore[arg-type]
    )
    reject(impl, ambiguity)
    opts = options(impl, memory_budget=case.memory_budget)

    def oracle(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        return naive_convnn(x, weight, bias, c, generator=case.generator())

    _, cand_g = with_grads(
        lambda x, weight, bias: impl.convnn(x, weight, bias, c, generator=case.generator(), **opts),
        t, case.seed, torch.float64, requires_grad=wanted,
    )
    _, gold_g = with_grads(oracle, promote(t), case.seed, torch.float64, requires_grad=wanted)
    _, perturbed_g = with_grads(oracle, tolerance.perturb(t, case.seed), case.seed, torch.float64, requires_grad=wanted)
    n = math.prod(case.spatial) * case.batch
    red = {"x": c.k * max(case.out_channels, 1) * n, "weight": n, "bias": n}
    tolerance.check_gradients(
        "test_gradients_vs_oracle", cand_g, gold_g, gold_g, dtype=torch.float64, reductions=red,
        case=(case, {"input_grad": input_grad}), device=device, perturbed=perturbed_g,
        score_gain=unmoved_score_gain(case, t),
    )


@settings(max_examples=30)
@given(case=general_cases(bases=("feature",), candidates=("all",), max_tokens=8))
def test_gradcheck_feature_basis(case: GeneralCase) -> None:
    """gradcheck passes for feature-basis ConvNN in float64 when the selection has a clear score gap."""
    case = _unit_normal(case)
    c = case.config
    t = case.tensors(torch.float64)
    x = t["x"] * 3  # type: ignore[operator]
    nb = cr.neighbours(x, c)
    full = cr.neighbours(x, c.replace(k=math.prod(case.spatial), self_slot="candidate"))
    kth = nb.score.detach()[..., -1:]
    near = ((full.score.detach() - kth).abs() < 1e-3).sum(-1)
    assume(bool((near <= 1).all()))  # only the k-th itself within the step's reach
    leaves = [x.requires_grad_(True)] + [
        v.detach().clone().requires_grad_(True) for v in (t["weight"], t["bias"]) if v is not None
    ]
    names = ["x"] + [n for n in ("weight", "bias") if t[n] is not None]

    def fn(*args: torch.Tensor) -> torch.Tensor:
        kw = dict(zip(names, args))
        return cr.convnn(kw["x"], kw.get("weight"), kw.get("bias"), c)

    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-7, atol=1e-5)
