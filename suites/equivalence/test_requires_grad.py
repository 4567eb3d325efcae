"""Gradients under every ``requires_grad`` combination (docs/error-model.md, gradients).

A layer's weight may be frozen while its input needs a gradient (fine-tuning the layers before
it), an input may be data while the weight trains, any subset of input, weight and bias (and of
queries, keys and values) may ask for a gradient. Routes choose by what needs autograd (a custom
backward, a no-grad blocked aggregation, checkpointed chunks), so each subset is its own code
path: every subset is drawn here, each leaf's gradient is checked against PyTorch's (or the
oracle's) under the same subset, a leaf that asks for none gets none, and with no leaf asking the
output carries no graph.
"""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
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
from suites.implementations import Implementation
from suites.strategies import AttentionCase, ConvCase, GeneralCase, attention_cases, conv_cases, general_cases
from suites.ties import attention_score_gain, image_ambiguity


def _subsets(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every subset of ``names``, the empty one first."""
    return [c for r in range(len(names) + 1) for c in combinations(names, r)]


def _leaves_present(tensors: dict[str, torch.Tensor | None]) -> tuple[str, ...]:
    return tuple(n for n, t in tensors.items() if t is not None)


def _check_graph(prop: str, out: torch.Tensor, wanted: tuple[str, ...], case: object) -> None:
    """With no leaf asking for a gradient, the output carries no graph."""
    if not wanted and out.requires_grad:
        raise AssertionError(tolerance.describe(prop, case, "output requires grad though no input does", [], kind="shape"))


def _no_grad_run(fn, tensors: dict[str, torch.Tensor | None]) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """``fn`` under grad mode with no leaf asking for a gradient."""
    return fn(**{n: None if t is None else t.detach() for n, t in tensors.items()})  # type: ignore[no-any-return]


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)
@given(case=conv_cases(dims=(1, 2)), dtype=dtypes, data=st.data())
def test_conv_gradients_for_every_requires_grad_subset(
    impl: Implementation, device: str, case: ConvCase, dtype: torch.dtype, data: st.DataObject
) -> None:
    """The exact conv configuration with any subset of x, weight, bias asking for a gradient
    (a frozen weight with an input that needs one included): each gradient meets the rule
    against F.conv*d under the same subset; the others are None."""
    config = case.config()
    skip_outside(
        impl, config, form="image", dtype=dtype, device=device, spatial_dims=case.dims, backward=True, shapes=case.shapes()
    )
    t = case.tensors(dtype, device)
    wanted = data.draw(st.sampled_from(_subsets(_leaves_present(t))), label="requires_grad")
    prop = "test_conv_gradients_for_every_requires_grad_subset"

    def cand_fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return impl.convnn(x, weight.reshape(weight.shape[0], weight.shape[1], -1), bias, config)

    def conv(**kw: torch.Tensor) -> torch.Tensor:
        return torch_conv(case, **kw)  # type: ignore[arg-type]

    label = (case, {"requires_grad": wanted})
    if not wanted:
        out = _no_grad_run(cand_fn, t)
        _check_graph(prop, out, wanted, label)
        gold = conv(**promote(t))  # type: ignore[arg-type]
        tolerance.check(prop, out, conv(**t), gold, dtype=dtype, reduction=case.reduction, case=label, device=device)  # type: ignore[arg-type]
        return
    _, cand_g = with_grads(cand_fn, t, case.seed, dtype, requires_grad=wanted)
    _, base_g = with_grads(conv, t, case.seed, dtype, requires_grad=wanted)
    gold, gold_g = with_grads(conv, promote(t), case.seed, dtype, requires_grad=wanted)
    _, perturbed_g = with_grads(conv, tolerance.perturb(t, case.seed), case.seed, dtype, requires_grad=wanted)
    tolerance.check_gradients(
        prop, cand_g, base_g, gold_g, dtype=dtype, reductions=case.gradient_reductions(gold[0, 0].numel()),
        case=label, device=device, perturbed=perturbed_g,
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)  # the oracle's backward runs through Python loops
@given(case=general_cases(candidates=("all", "grid")), data=st.data())
def test_gradients_for_every_requires_grad_subset_vs_oracle(
    impl: Implementation, device: str, case: GeneralCase, data: st.DataObject
) -> None:
    """Any configuration (every basis and kernel: the gather route, its no-grad blocked
    aggregation, the dense route, the shifted route's custom backward) with any subset of x,
    weight, bias asking for a gradient: each equals the oracle's in float64."""
    c = case.config
    skip_outside(
        impl, c, form="image", dtype=torch.float64, device=device, spatial_dims=len(case.spatial), backward=True,
        shapes=case.shapes(),
    )
    t = case.tensors(torch.float64, device)
    wanted = data.draw(st.sampled_from(_subsets(_leaves_present(t))), label="requires_grad")
    reject(impl, image_ambiguity(
        t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3, distinct_tokens="x" in wanted  # type: ignore[arg-type]
    ))
    opts = options(impl, memory_budget=case.memory_budget)
    prop = "test_gradients_for_every_requires_grad_subset_vs_oracle"
    label = (case, {"requires_grad": wanted})

    def cand_fn(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        return impl.convnn(x, weight, bias, c, generator=case.generator(), **opts)

    def oracle(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        return naive_convnn(x, weight, bias, c, generator=case.generator())

    n = math.prod(case.spatial) * case.batch
    if not wanted:
        out = _no_grad_run(cand_fn, t)
        _check_graph(prop, out, wanted, label)
        gold = oracle(**promote(t))  # type: ignore[arg-type]
        tolerance.check(
            prop, out, gold, gold, dtype=torch.float64, reduction=case.reduction, case=label, device=device,
            score_gain=unmoved_score_gain(case, t),
        )
        return
    _, cand_g = with_grads(cand_fn, t, case.seed, torch.float64, requires_grad=wanted)
    _, gold_g = with_grads(oracle, promote(t), case.seed, torch.float64, requires_grad=wanted)
    _, perturbed_g = with_grads(oracle, tolerance.perturb(t, case.seed), case.seed, torch.float64, requires_grad=wanted)
    red = {"x": c.k * max(case.out_channels, 1) * n, "weight": n, "bias": n}
    tolerance.check_gradients(
        prop, cand_g, gold_g, gold_g, dtype=torch.float64, reductions=red, case=label, device=device,
        perturbed=perturbed_g, score_gain=unmoved_score_gain(case, t),
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)
@given(case=attention_cases(masks=("none", "causal")), dtype=dtypes, data=st.data())
def test_attention_gradients_for_every_requires_grad_subset(
    impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype, data: st.DataObject
) -> None:
    """Dense attention (k = Nk) with any subset of q, k, v asking for a gradient: each gradient
    meets the rule against SDPA under the same subset; the others are None."""
    config = cr.ConvNNConfig(k=case.nk, basis="feature", similarity="scaled_dot", scale=case.scale, rho="softmax", kernel="sum")
    allowed = case.allowed(device)
    skip_outside(
        impl, config, form="attention", dtype=dtype, device=device, masked=allowed is not None, backward=True,
        shapes=case.shapes(),
    )
    if allowed is not None and not bool(allowed.any(-1).all()):
        reject(impl, "fully masked row: SDPA's gradient is NaN there")
    t = case.tensors(dtype, device)
    t = {**t, "k": t["k"].clone()}  # separate leaves even in self-attention
    wanted = data.draw(st.sampled_from(_subsets(("q", "k", "v"))), label="requires_grad")
    prop = "test_attention_gradients_for_every_requires_grad_subset"
    label = (case, {"requires_grad": wanted})

    def cand_fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return impl.attention(q, k, v, config, allowed=allowed)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = None if allowed is None else allowed.to(q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=case.scale)

    if not wanted:
        out = _no_grad_run(cand_fn, t)  # type: ignore[arg-type]
        _check_graph(prop, out, wanted, label)
        gold = sdpa(**promote(t))  # type: ignore[arg-type]
        tolerance.check(prop, out, sdpa(**t), gold, dtype=dtype, reduction=case.reduction, case=label, device=device)
        return
    _, cand_g = with_grads(cand_fn, t, case.seed, dtype, requires_grad=wanted)  # type: ignore[arg-type]
    _, base_g = with_grads(sdpa, t, case.seed, dtype, requires_grad=wanted)  # type: ignore[arg-type]
    _, gold_g = with_grads(sdpa, promote(t), case.seed, dtype, requires_grad=wanted)  # type: ignore[arg-type]
    _, perturbed_g = with_grads(sdpa, tolerance.perturb(t, case.seed), case.seed, dtype, requires_grad=wanted)  # type: ignore[arg-type]
    tolerance.check_gradients(
        prop, cand_g, base_g, gold_g, dtype=dtype, reductions=case.gradient_reductions, case=label, device=device,
        perturbed=perturbed_g, score_gain=attention_score_gain(t["q"], t["k"], t["v"], case.scale),
    )


def test_frozen_layer_weight_still_gives_the_input_its_gradient() -> None:
    """``ConvNN2d`` recovered from ``nn.Conv2d`` with its parameters frozen (``requires_grad_(False)``)
    passes the input's gradient on as the frozen conv does (the fine-tuning case), and leaves
    the parameters without one."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    layer = cr.from_conv(conv)
    for p in (*conv.parameters(), *layer.parameters()):
        p.requires_grad_(False)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    cot = torch.randn(2, 4, 7, 6, generator=g, dtype=torch.float64)
    grads = []
    for module in (conv, layer):
        leaf = x.clone().requires_grad_(True)
        module(leaf).backward(cot)
        grads.append(leaf.grad)
    assert grads[1] is not None, "the input got no gradient through a layer with a frozen weight"
    tolerance.check(
        "test_frozen_layer_weight_still_gives_the_input_its_gradient", grads[1], grads[0], grads[0],
        dtype=torch.float64, reduction=4 * 9, case={"conv": "Conv2d(3, 4, 3, padding=1)", "x": (2, 3, 7, 6), "seed": 0},
        what="grad x",
    )
    assert all(p.grad is None for p in layer.parameters())
