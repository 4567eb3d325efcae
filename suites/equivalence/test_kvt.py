"""Sparse top-k attention: ConvNN with k < N is KVT attention as its paper defines it
(`cr.kvt_attention`). Ties at the k-th place make the selection ambiguous, so outputs are
compared on rows with a clear gap (`suites.tolerance.clear_rows`) and selections by their
scores everywhere."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import convnn_ref as cr
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, gold_pair, skip_outside
from suites.implementations import Implementation, Shapes
from suites.inputs import tokens
from suites.strategies import EDGE_ATTENTION, AttentionCase, attention_cases, randn


def _gold_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None) -> torch.Tensor:
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q.double().cpu() @ k.double().cpu().transpose(-2, -1)) * s


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
@example(case=EDGE_ATTENTION[2], dtype=torch.float64)
def test_kvt_matches_paper(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """ConvNN with kvt_config(k) equals the KVT paper's dense masked top-k attention on every row with a score gap."""
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, shapes=case.shapes())
    t = case.tensors(dtype, device)
    cand = impl.attention(t["q"], t["k"], t["v"], config)
    base = cr.kvt_attention(t["q"], t["k"], t["v"], case.topk, case.scale).cpu().double()
    gold, perturbed = gold_pair(lambda q, k, v: cr.kvt_attention(q, k, v, case.topk, case.scale), t, case.seed)
    scores = _gold_scores(t["q"], t["k"], case.scale)
    clear = tolerance.clear_rows(scores, case.topk, tolerance.score_gap(scores, dtype, case.dim))[..., None]
    cand64 = cand.detach().cpu().double()
    if cand64.shape == gold.shape:  # rows without a gap compare nothing: gold, base, perturbed take cand's values
        gold, base, perturbed = (torch.where(clear, g, cand64) for g in (gold, base, perturbed))
    tolerance.check(
        "test_kvt_matches_paper", cand, base, gold, dtype=dtype, reduction=case.topk * (case.dim + case.vdim), case=case,
        device=device, perturbed=perturbed,
    )


@st.composite
def _tied(draw: st.DrawFn) -> AttentionCase:
    """A KVT case whose keys repeat, so ties at the k-th place are common."""
    case = draw(attention_cases(masks=("none",)))
    return AttentionCase(**{**case.__dict__, "nk": max(case.nk, 2), "topk": min(case.topk, max(case.nk, 2) - 1)})


@given(case=_tied())
def test_kvt_ties_select_equal_scores(case: AttentionCase) -> None:
    """Under exact ties the selected scores are the top-k scores and outputs stay in the convex hull of V."""
    t = case.tensors(torch.float64)
    half = (case.nk + 1) // 2
    k = torch.cat([t["k"][:, :half], t["k"][:, :half]], dim=1)[:, : case.nk]  # every key twice
    v = t["v"]
    config = cr.kvt_config(case.topk, case.scale)
    nb = cr.attention_neighbours(t["q"], k, config)
    scores = _gold_scores(t["q"], k, case.scale)
    tolerance.check_selection(
        "test_kvt_ties_select_equal_scores",
        nb.index,
        nb.score.detach(),
        scores,
        case.topk,
        case=case,
        atol=tolerance.score_gap(scores, torch.float64, case.dim),
    )
    y = cr.convnn_attention(t["q"], k, v, config)
    lo, hi = v.min(dim=1, keepdim=True).values, v.max(dim=1, keepdim=True).values
    slack = tolerance.floor(v, torch.float64, case.nk)
    assert bool(((y >= lo - slack) & (y <= hi + slack)).all()), tolerance.describe(
        "test_kvt_ties_select_equal_scores", case, "output outside the convex hull of V", [], kind="structure"
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
def test_kvt_neighbours_are_topk(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """impl.neighbours in scaled-dot self-selection returns the k largest scores as a set (tie-tolerant)."""
    config = cr.kvt_config(case.topk, case.scale)
    x = tokens(
        (case.batch, case.dim, case.nk), case.seed, dtype, device, style=case.style, scale=case.magnitude,
        token_axis=2, feature_axis=1,
    )  # (B, C, N): tokens are columns
    shapes = Shapes(form="image", batch=case.batch, channels=case.dim, spatial=(case.nk,))
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=1, shapes=shapes)
    if not impl.capabilities.neighbours:
        pytest.skip(f"{impl.name}: offers no neighbours()")
    out = impl.neighbours(x, config)
    assert out is not None, f"{impl.name} declares neighbours=True but returned None"
    index, score = out
    rows = x.transpose(1, 2)
    gold = _gold_scores(rows, rows, case.scale)
    atol = tolerance.score_gap(gold, dtype, case.dim)
    tolerance.check_selection(
        "test_kvt_neighbours_are_topk", index.cpu(), score.cpu(), gold, case.topk, case=case, atol=atol
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
def test_kvt_full_k_is_dense(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """KVT with k = Nk keeps every key: it equals dense SDPA."""
    config = cr.kvt_config(case.nk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, shapes=case.shapes())
    t = case.tensors(dtype, device)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=case.scale)

    cand = impl.attention(t["q"], t["k"], t["v"], config)
    gold, perturbed = gold_pair(sdpa, t, case.seed)
    tolerance.check(
        "test_kvt_full_k_is_dense", cand, sdpa(**t), gold, dtype=dtype, reduction=case.reduction, case=case, device=device,
        perturbed=perturbed,
    )


@given(case=attention_cases(masks=("none",)), heads=st.integers(1, 3))
def test_kvt_module_matches_convnn_attention(case: AttentionCase, heads: int) -> None:
    """cr.KVTAttention (the paper's block) equals its projections around per-head ConvNN KVT attention."""
    dim = heads * max(case.dim, 1)
    block = cr.KVTAttention(dim, heads, topk=case.topk, qkv_bias=True).double().eval()
    with torch.no_grad():
        for i, p in enumerate(block.parameters()):
            p.copy_(randn(tuple(p.shape), case.seed + 20 + i, torch.float64) / dim**0.5)  # unit-size terms
    x = randn((case.batch, case.nk, dim), case.seed, torch.float64)
    b, n = x.shape[:2]
    with torch.no_grad():
        qkv = (
            block.qkv(x)
            .reshape(b, n, 3, heads, dim // heads)
            .permute(2, 0, 3, 1, 4)
            .reshape(3, b * heads, n, dim // heads)
        )
        scores = _gold_scores(qkv[0], qkv[1], block.scale)
        y = cr.convnn_attention(qkv[0], qkv[1], qkv[2], cr.kvt_config(case.topk, block.scale))
        cand = block.proj(y.reshape(b, heads, n, -1).transpose(1, 2).reshape(b, n, dim))
        gold = block(x)
    clear = tolerance.clear_rows(scores, case.topk, tolerance.score_gap(scores, torch.float64, dim)).reshape(b, heads, n).all(dim=1)[..., None]
    cand = torch.where(clear, cand, gold)
    tolerance.check(
        "test_kvt_module_matches_convnn_attention",
        cand,
        gold,
        gold,
        dtype=torch.float64,
        reduction=dim * dim * (case.topk + 2),
        case=(case, heads),
    )
