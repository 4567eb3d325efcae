"""Implementations against the naive oracle (docs/error-model.md: where PyTorch has no operator,
gold is the deliberately naive implementation in float64). Data-dependent selections (feature,
hybrid) are compared in float64, where base = the oracle on perturbed inputs: rounding in a lower
dtype may legitimately flip a near-tie. Position selections are data-independent, so they run in
every dtype with base = the oracle in the test dtype.

Inputs with a harmful near-tie (`suites.ties`) are set aside here; the ``*_canonical_rule``
properties take them back for implementations that declare the canonical tie rule."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import naive_attention, naive_convnn
from suites import tolerance
from suites.equivalence._common import (
    DEVICES,
    dtypes,
    gold_pair,
    options,
    reject,
    require_tie_rule,
    skip_outside,
    unmoved_score_gain,
)
from suites.implementations import Implementation, Shapes
from suites.inputs import tokens
from suites.strategies import (
    GeneralCase,
    attention_problems,
    general_cases,
    randn,
    steered_dtypes,
    tied_feature_cases,
)
from suites.ties import attention_ambiguity, image_ambiguity

ORACLE_EXAMPLES = 40  # the oracle loops in Python (up to ~0.1 s an example); 40 keep each property near 3 s


def _image_property(
    prop: str, impl: Implementation, case: GeneralCase, dtype: torch.dtype, device: str, *, canonical_ties: bool = False
) -> None:
    """cand = impl.convnn in dtype; gold = oracle in float64 on promoted inputs (and on perturbed
    ones); base = oracle in dtype. Inputs with a harmful near-tie are set aside unless
    ``canonical_ties`` (then the implementation must declare the canonical rule)."""
    c = case.config
    if canonical_ties:
        require_tie_rule(impl)
    skip_outside(
        impl, c, form="image", dtype=dtype, device=device, spatial_dims=len(case.spatial),
        num_tokens=math.prod(case.spatial), shapes=case.shapes(),
    )
    t = case.tensors(dtype, device)
    if not canonical_ties:
        ambiguity = image_ambiguity(t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3, dtype=dtype)  # type: ignore[arg-type]
        reject(impl, ambiguity)
    cand = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator(), **options(impl, memory_budget=case.memory_budget))

    def oracle(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        return naive_convnn(x, weight, bias, c, generator=case.generator())

    gold, perturbed = gold_pair(oracle, t, case.seed)
    cpu = {n: None if v is None else v.cpu() for n, v in t.items()}
    base = gold if dtype == torch.float64 else oracle(**cpu)  # type: ignore[arg-type]
    tolerance.check(
        prop, cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device, perturbed=perturbed,
        # aggregated coordinate channels are unit-size values no perturbation moves (-1/3 + 1/3 cancels)
        unit_terms=True if case.computed_unit_terms or case.config.coord_encoding != "none" else None,
        score_gain=unmoved_score_gain(case, t),
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases())
@example(case=GeneralCase(ConvNNConfig(k=1, kernel="sum"), 1, 1, 1, (1, 1), False, 0))  # 1x1 input, k = 1, C = 1
@example(case=GeneralCase(ConvNNConfig(k=91, rho="softmax", kernel="sum"), 1, 2, 2, (13, 7), False, 1))  # 13x7, k = N
@example(case=GeneralCase(ConvNNConfig(k=4, kernel="grouped", groups=3), 2, 3, 6, (5, 4), True, 2))  # groups = C
def test_image_form_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """On any configuration (every knob), the image form equals the naive oracle in float64."""
    _image_property("test_image_form_vs_oracle", impl, case, torch.float64, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(bases=("position",), dims=(1, 2, 3)), dtype=dtypes)
def test_position_basis_vs_oracle_all_dtypes(
    impl: Implementation, device: str, case: GeneralCase, dtype: torch.dtype
) -> None:
    """Position-basis ConvNN (metrics, coordinates, padding, dilation, offsets) equals the oracle in every dtype."""
    _image_property("test_position_basis_vs_oracle_all_dtypes", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(bases=("feature", "hybrid")), dtype=steered_dtypes((torch.float32, torch.bfloat16, torch.float16)))
def test_feature_basis_vs_oracle_low_precision(
    impl: Implementation, device: str, case: GeneralCase, dtype: torch.dtype
) -> None:
    """Feature and hybrid selection in float32/bfloat16/float16 (scores computed in that dtype) gives the oracle's output wherever no score is within rounding of another that matters."""
    _image_property("test_feature_basis_vs_oracle_low_precision", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(candidates=("random",)))
def test_random_candidates_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Random candidate sets drawn from generators with the same seed give the oracle's output."""
    _image_property("test_random_candidates_vs_oracle", impl, case, torch.float64, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(candidates=("grid",)))
def test_grid_candidates_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Grid candidate sets (count per axis, margin) give the oracle's output."""
    _image_property("test_grid_candidates_vs_oracle", impl, case, torch.float64, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(bases=("hybrid",)))
def test_hybrid_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Hybrid scores (lambda-weighted features and coordinates) give the oracle's output."""
    _image_property("test_hybrid_vs_oracle", impl, case, torch.float64, device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(bases=("feature", "hybrid"), self_slots=("forced",)))
def test_forced_self_vs_oracle(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Forcing the query into slot 0 gives the oracle's output (feature and hybrid bases)."""
    _image_property("test_forced_self_vs_oracle", impl, case, torch.float64, device)


# --------------------------------------------------------------------------- attention form


def _attention_property(prop: str, impl: Implementation, device: str, p: dict, *, canonical_ties: bool = False) -> None:
    """cand = impl.attention; gold = the oracle in float64 (and on perturbed inputs). Inputs with
    a harmful near-tie are set aside unless ``canonical_ties``."""
    c, s, f64 = p["config"], p["seed"], torch.float64
    if canonical_ties:
        require_tie_rule(impl)
    allowed = None
    if p["mask"] == "causal":
        allowed = torch.ones(p["nq"], p["nk"], dtype=torch.bool).tril()[None]
    elif p["mask"] == "random":
        allowed = torch.rand(p["b"], p["nq"], p["nk"], generator=torch.Generator().manual_seed(s)) < 0.7
    shapes = Shapes(form="attention", batch=p["b"], nq=p["nq"], nk=p["nk"], dim=p["d"], vdim=p["dv"], self_attention=False)
    skip_outside(impl, c, form="attention", dtype=f64, device=device, masked=allowed is not None, shapes=shapes)
    style = {"style": p["style"], "scale": p["magnitude"]}
    t = {
        "q": tokens((p["b"], p["nq"], p["d"]), s, f64, device, **style),
        "k": tokens((p["b"], p["nk"], p["d"]), s + 1, f64, device, **style),
        "v": tokens((p["b"], p["nk"], p["dv"]), s + 2, f64, device, **style),
    }
    if not canonical_ties:
        reject(impl, attention_ambiguity(t["q"], t["k"], t["v"], c, allowed=allowed, generator=torch.Generator().manual_seed(s + 7)))
    mask = None if allowed is None else allowed.to(device)
    opts = options(impl, memory_budget=p["memory_budget"])
    cand = impl.attention(t["q"], t["k"], t["v"], c, allowed=mask, generator=torch.Generator().manual_seed(s + 7), **opts)

    def oracle(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return naive_attention(q, k, v, c, allowed=allowed, generator=torch.Generator().manual_seed(s + 7))

    gold, perturbed = gold_pair(oracle, t, s)
    tolerance.check(prop, cand, gold, gold, dtype=f64, reduction=c.k * p["dv"] + p["d"], case=p, device=device, perturbed=perturbed)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(p=attention_problems())
@example(
    p={
        "config": ConvNNConfig(k=1, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum"),
        "b": 1,
        "nq": 1,
        "nk": 1,
        "d": 1,
        "dv": 1,
        "mask": "none",
        "seed": 0,
        "style": "normal",
        "magnitude": 1.0,
        "memory_budget": None,
    }
)
def test_attention_form_vs_oracle(impl: Implementation, device: str, p: dict) -> None:
    """The sequence form (similarities, masks, random candidates, forced self) equals the naive oracle in float64."""
    _attention_property("test_attention_form_vs_oracle", impl, device, p)


# ------------------------------------------------------------------ the canonical tie rule


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=general_cases(bases=("position",), dims=(1, 2)))
def test_position_ties_follow_the_canonical_rule(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Position scores tie exactly (equidistant points); with the canonical rule the output equals the oracle's, ties included."""
    _image_property("test_position_ties_follow_the_canonical_rule", impl, case, torch.float64, device, canonical_ties=True)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(case=tied_feature_cases())
def test_feature_ties_follow_the_canonical_rule(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Exact feature-score ties between different values (C = 1 cosine, scaled copies, duplicates with coordinates) go to the lower index."""
    _image_property("test_feature_ties_follow_the_canonical_rule", impl, case, torch.float64, device, canonical_ties=True)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=ORACLE_EXAMPLES)
@given(p=attention_problems(styles=("duplicated_tokens",)))
def test_attention_ties_follow_the_canonical_rule(impl: Implementation, device: str, p: dict) -> None:
    """Duplicated keys with different values tie exactly; with the canonical rule the sequence form equals the oracle."""
    _attention_property("test_attention_ties_follow_the_canonical_rule", impl, device, p, canonical_ties=True)


@pytest.mark.parametrize(
    "similarity",
    [
        "dot",
        "euclidean",
        "scaled_dot",
    ],
)
@settings(max_examples=ORACLE_EXAMPLES)  # the oracle's Python loops
@given(h=st.integers(2, 5), w=st.integers(2, 5), k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
@example(h=5, w=3, k=2, seed=0)  # once exposed a tie broken by rounding (the scale applied to q before q.k)
def test_hybrid_ties_follow_the_canonical_rule(
    impl: Implementation, similarity: str, h: int, w: int, k: int, seed: int
) -> None:
    """Hybrid scores with lambda = 0 on integer coordinates tie exactly; the tie rule (lower index first) matches the oracle."""
    require_tie_rule(impl)
    config = ConvNNConfig(
        k=min(k, h * w),
        basis="hybrid",
        coordinates="integer",
        similarity=similarity,
        hybrid_lambda=0.0,
        kernel="sum",
        coord_encoding="score",
    )  # type: ignore[arg-type]
    shapes = Shapes(form="image", batch=1, channels=3, spatial=(h, w))
    skip_outside(impl, config, form="image", dtype=torch.float64, device="cpu", spatial_dims=2, shapes=shapes)
    x = randn((1, 3, h, w), seed, torch.float64)
    gold = naive_convnn(x, None, None, config)
    cand = impl.convnn(x, None, None, config)
    case = {"similarity": similarity, "h": h, "w": w, "k": config.k, "seed": seed}
    tolerance.check(
        "test_hybrid_ties_follow_the_canonical_rule",
        cand,
        gold,
        gold,
        dtype=torch.float64,
        reduction=config.k * 3 + 5,
        case=case,
    )
