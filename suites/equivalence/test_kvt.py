"""Sparse top-k attention (SPEC §3.4): ConvNN with k < N is KVT attention as its paper defines
it (`cr.kvt_attention`). Ties at the k-th place make the selection ambiguous, so outputs are
compared on rows with a clear gap and selections by their scores everywhere."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import convnn_ref as cr
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, promote, skip_outside
from suites.implementations import Implementation
from suites.strategies import EDGE_ATTENTION, AttentionCase, attention_cases, randn


def _gold_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None) -> torch.Tensor:
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q.double().cpu() @ k.double().cpu().transpose(-2, -1)) * s


def _clear_rows(scores: torch.Tensor, topk: int, gap: float) -> torch.Tensor:
    """Rows ``(..., Nq)`` whose k-th and (k+1)-th scores differ by more than ``gap``."""
    if topk >= scores.shape[-1]:
        return torch.ones(scores.shape[:-1], dtype=torch.bool)
    ordered = scores.sort(dim=-1, descending=True).values
    return (ordered[..., topk - 1] - ordered[..., topk]) > gap


def _score_gap(scores: torch.Tensor, dtype: torch.dtype, dim: int) -> float:
    """A gap no rounding of the scores in ``dtype`` can close."""
    return 16 * tolerance.eps(dtype) * (float(scores.abs().max()) + 1.0) * math.sqrt(dim)


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
@example(case=EDGE_ATTENTION[2], dtype=torch.float64)
def test_kvt_matches_paper(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """ConvNN with kvt_config(k) equals the KVT paper's dense masked top-k attention on every row with a score gap."""
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device)
    t = case.tensors(dtype, device)
    cand = impl.attention(t["q"], t["k"], t["v"], config)
    base = cr.kvt_attention(t["q"], t["k"], t["v"], case.topk, case.scale).cpu().double()
    g = promote(t)
    gold = cr.kvt_attention(g["q"], g["k"], g["v"], case.topk, case.scale)  # type: ignore[arg-type]
    scores = _gold_scores(t["q"], t["k"], case.scale)
    clear = _clear_rows(scores, case.topk, _score_gap(scores, dtype, case.dim))[..., None]
    cand64 = cand.detach().cpu().double()
    if cand64.shape == gold.shape:  # rows without a gap compare nothing: gold and base take cand's values
        gold, base = torch.where(clear, gold, cand64), torch.where(clear, base, cand64)
    tolerance.check(
        "test_kvt_matches_paper", cand, base, gold, dtype=dtype, reduction=case.topk * (case.dim + case.vdim), case=case, device=device
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
    tolerance.check_selection(
        "test_kvt_ties_select_equal_scores",
        nb.index,
        nb.score.detach(),
        _gold_scores(t["q"], k, case.scale),
        case.topk,
        case=case,
        atol=1e-12,
    )
    y = cr.convnn_attention(t["q"], k, v, config)
    lo, hi = v.min(dim=1, keepdim=True).values, v.max(dim=1, keepdim=True).values
    assert bool(((y >= lo - 1e-12) & (y <= hi + 1e-12)).all()), tolerance.describe(
        "test_kvt_ties_select_equal_scores", case, "output outside the convex hull of V", []
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
def test_kvt_neighbours_are_topk(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """impl.neighbours in scaled-dot self-selection returns the k largest scores as a set (tie-tolerant)."""
    config = cr.kvt_config(case.topk, case.scale)
    skip_outside(impl, config, form="image", dtype=dtype, device=device, spatial_dims=1)
    if not impl.capabilities.neighbours:
        pytest.skip(f"{impl.name}: offers no neighbours()")
    x = randn((case.batch, case.dim, case.nk), case.seed, dtype, device)  # (B, C, N): tokens are columns
    out = impl.neighbours(x, config)
    assert out is not None, f"{impl.name} declares neighbours=True but returned None"
    index, score = out
    tokens = x.transpose(1, 2)
    gold = _gold_scores(tokens, tokens, case.scale)
    atol = _score_gap(gold, dtype, case.dim)
    tolerance.check_selection(
        "test_kvt_neighbours_are_topk", index.cpu(), score.cpu(), gold, case.topk, case=case, atol=atol
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
def test_kvt_full_k_is_dense(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """KVT with k = Nk keeps every key: it equals dense SDPA."""
    config = cr.kvt_config(case.nk, case.scale)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device)
    t = case.tensors(dtype, device)
    cand = impl.attention(t["q"], t["k"], t["v"], config)
    base = torch.nn.functional.scaled_dot_product_attention(t["q"], t["k"], t["v"], scale=case.scale)
    g = promote(t)
    gold = torch.nn.functional.scaled_dot_product_attention(g["q"], g["k"], g["v"], scale=case.scale)  # type: ignore[arg-type]
    tolerance.check("test_kvt_full_k_is_dense", cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device)


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
    clear = _clear_rows(scores, case.topk, 1e-9).reshape(b, heads, n).all(dim=1)[..., None]
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
