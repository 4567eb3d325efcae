"""Exact attention: ConvNN with scaled-dot scores, softmax and the sum kernel over every allowed
key is ``F.scaled_dot_product_attention``; `from_multihead_attention` layers are the
``nn.MultiheadAttention`` modules they copy (``is_causal`` included); cross-attention is the same
operation."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, gold_pair, skip_outside
from suites.implementations import Implementation
from suites.strategies import EDGE_ATTENTION, AttentionCase, attention_cases, randn


def _dense_config(case: AttentionCase) -> ConvNNConfig:
    return ConvNNConfig(
        k=case.nk, basis="feature", similarity="scaled_dot", scale=case.scale, rho="softmax", kernel="sum"
    )


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None, scale: float | None
) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


def _sdpa_property(prop: str, impl: Implementation, case: AttentionCase, dtype: torch.dtype, device: str) -> None:
    """cand = impl.attention, base = SDPA in dtype, gold = SDPA in float64 (rows SDPA leaves
    undefined, i.e. fully masked ones, are checked by test_fully_masked_row_is_zero)."""
    config = _dense_config(case)
    allowed = case.allowed(device)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, masked=allowed is not None, shapes=case.shapes())
    t = case.tensors(dtype, device)
    cand = impl.attention(t["q"], t["k"], t["v"], config, allowed=allowed)
    base = _sdpa(t["q"], t["k"], t["v"], allowed, case.scale)
    mask = None if allowed is None else allowed.cpu()
    gold, perturbed = gold_pair(lambda q, k, v: _sdpa(q, k, v, mask, case.scale), t, case.seed)
    tolerance.check(prop, cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device, perturbed=perturbed)


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none",)), dtype=dtypes)
@example(case=EDGE_ATTENTION[0], dtype=torch.float64)
def test_sdpa_exact(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """Unmasked dense ConvNN attention equals F.scaled_dot_product_attention."""
    _sdpa_property("test_sdpa_exact", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("bool", "key_padding")), dtype=dtypes)
@example(case=EDGE_ATTENTION[1], dtype=torch.float32)
def test_sdpa_bool_mask(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """With a boolean or key-padding mask, ConvNN attention equals SDPA on every row SDPA defines."""
    _sdpa_property("test_sdpa_bool_mask", impl, case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("causal",)), dtype=dtypes)
def test_sdpa_causal(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """With the top-left causal mask as `allowed`, ConvNN attention equals SDPA."""
    _sdpa_property("test_sdpa_causal", impl, case, dtype, device)


@given(case=attention_cases(), dtype=dtypes)
def test_sdpa_twin(case: AttentionCase, dtype: torch.dtype) -> None:
    """cr.scaled_dot_product_attention equals F.scaled_dot_product_attention (is_causal, masks, scale)."""
    t = case.tensors(dtype)
    causal = case.mask == "causal"
    mask = None if causal else case.allowed()
    cand = cr.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=mask, is_causal=causal, scale=case.scale)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=case.scale)

    gold, perturbed = gold_pair(sdpa, t, case.seed)
    tolerance.check("test_sdpa_twin", cand, sdpa(**t), gold, dtype=dtype, reduction=case.reduction, case=case, perturbed=perturbed)


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("bool",)), dtype=dtypes)
def test_fully_masked_row_is_zero(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """A query with no allowed key outputs exactly zero (the bias; docs/semantics.md), never NaN."""
    config = _dense_config(case)
    allowed = case.allowed(device)
    assert allowed is not None
    allowed = allowed.clone()
    allowed[:, 0, :] = False
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, masked=True, shapes=case.shapes())
    t = case.tensors(dtype, device)
    y = impl.attention(t["q"], t["k"], t["v"], config, allowed=allowed)
    empty = ~allowed.expand(y.shape[0], -1, -1).any(-1)
    rows = y[empty]
    if not bool((rows == 0).all()):
        raise AssertionError(
            tolerance.describe(
                "test_fully_masked_row_is_zero",
                case,
                "a fully masked row is not zero",
                [f"values {rows.flatten()[:6].tolist()}"],
                kind="mismatch" if not bool(rows.isnan().any()) else "nan",
            )
        )


@pytest.mark.parametrize("device", DEVICES)
@given(case=attention_cases(masks=("none", "bool")), dtype=dtypes)
def test_cross_attention(impl: Implementation, device: str, case: AttentionCase, dtype: torch.dtype) -> None:
    """Queries and keys from different sequences (Nq != Nk, distinct tensors) give SDPA's cross-attention."""
    t = case.tensors(dtype, device)
    q = randn((case.batch * case.heads, case.nq + 1, case.dim), case.seed + 5, dtype, device)
    allowed = case.allowed(device)
    allowed = None if allowed is None else torch.cat([allowed, allowed[:, :1]], dim=1)
    config = _dense_config(case)
    shapes = dataclasses.replace(case.shapes(), nq=case.nq + 1, self_attention=False)
    skip_outside(impl, config, form="attention", dtype=dtype, device=device, masked=allowed is not None, shapes=shapes)
    cand = impl.attention(q, t["k"], t["v"], config, allowed=allowed)
    base = _sdpa(q, t["k"], t["v"], allowed, case.scale)
    mask = None if allowed is None else allowed.cpu()
    gold, perturbed = gold_pair(lambda q, k, v: _sdpa(q, k, v, mask, case.scale), {**t, "q": q}, case.seed)
    tolerance.check(
        "test_cross_attention", cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device, perturbed=perturbed
    )


# --------------------------------------------------------------------------- nn.MultiheadAttention


@st.composite
def mha_cases(draw: st.DrawFn) -> dict:
    """Constructor options and call shapes of an nn.MultiheadAttention problem."""
    heads = draw(st.integers(1, 3))
    return {
        "embed_dim": heads * draw(st.integers(1, 4)),
        "num_heads": heads,
        "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "kdim": draw(st.none() | st.integers(1, 5)),
        "vdim": draw(st.none() | st.integers(1, 5)),
        "batch": draw(st.integers(1, 2)),
        "nq": draw(st.integers(1, 8)),
        "nk": draw(st.integers(1, 8)),
        "mask": draw(st.sampled_from(("none", "causal", "is_causal", "attn_bool", "key_padding", "both"))),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def _mha_inputs(c: dict, dtype: torch.dtype) -> tuple[torch.nn.MultiheadAttention, dict]:
    opts = {n: c[n] for n in ("embed_dim", "num_heads", "bias", "batch_first", "kdim", "vdim")}
    mha = torch.nn.MultiheadAttention(**opts, dtype=dtype).eval()
    with torch.no_grad():
        for i, p in enumerate(mha.parameters()):
            p.copy_(randn(tuple(p.shape), c["seed"] + 10 + i, dtype) * 0.5)
    b, nq, nk, e = c["batch"], c["nq"], c["nk"], c["embed_dim"]
    lead_q, lead_k = ((b, nq), (b, nk)) if c["batch_first"] else ((nq, b), (nk, b))
    kw: dict = {
        "query": randn((*lead_q, e), c["seed"], dtype),
        "key": randn((*lead_k, c["kdim"] or e), c["seed"] + 1, dtype),
        "value": randn((*lead_k, c["vdim"] or e), c["seed"] + 2, dtype),
    }
    g = torch.Generator().manual_seed(c["seed"] + 3)
    if c["mask"] in ("causal", "is_causal"):
        kw["attn_mask"] = torch.ones(nq, nk, dtype=torch.bool).triu(1)
    if c["mask"] in ("attn_bool", "both"):
        kw["attn_mask"] = torch.rand(nq, nk, generator=g) < 0.3
    if c["mask"] in ("key_padding", "both"):
        kw["key_padding_mask"] = torch.rand(b, nk, generator=g) < 0.3
    return mha, kw


@given(c=mha_cases(), dtype=dtypes)
def test_multihead_attention_exact(c: dict, dtype: torch.dtype) -> None:
    """from_multihead_attention(mha) equals mha (heads, biases, batch_first, kdim/vdim, masks)."""
    mha, kw = _mha_inputs(c, dtype)
    layer = cr.from_multihead_attention(mha)
    causal = c["mask"] == "is_causal"
    with torch.no_grad():
        # is_causal: the ConvNN layer builds the mask itself; nn.MultiheadAttention takes it as a
        # hint beside the causal attn_mask
        cand = layer(**{n: t for n, t in kw.items() if not (causal and n == "attn_mask")}, is_causal=causal)
        base = mha(**kw, need_weights=False, is_causal=causal)[0]
    gold_mha = copy.deepcopy(mha).double()
    tensors = {n: t for n, t in kw.items() if t.is_floating_point()}
    masks = {n: t for n, t in kw.items() if not t.is_floating_point()}
    gold, perturbed = gold_pair(lambda **t: gold_mha(**t, **masks, need_weights=False, is_causal=causal)[0], tensors, c["seed"])
    reduction = (c["nk"] + 3) * 2 * max(c["embed_dim"], c["kdim"] or 0, c["vdim"] or 0)
    tolerance.check("test_multihead_attention_exact", cand, base, gold, dtype=dtype, reduction=reduction, case=c, perturbed=perturbed)


@given(c=mha_cases())
def test_multihead_attention_qk_roles(c: dict) -> None:
    """Swapping the q and k projections changes the function (the roles of queries and keys are observable)."""
    c = {**c, "kdim": None, "vdim": None, "mask": "none", "nq": max(c["nq"], 2), "nk": max(c["nk"], 2)}
    c["embed_dim"] = max(c["embed_dim"], 2 * c["num_heads"])
    mha, kw = _mha_inputs(c, torch.float64)
    layer = cr.from_multihead_attention(mha)
    with torch.no_grad():
        swapped = copy.deepcopy(layer)
        swapped.q_proj.weight.copy_(layer.k_proj.weight)
        swapped.k_proj.weight.copy_(layer.q_proj.weight)
        same = torch.allclose(layer(**kw), swapped(**kw), atol=1e-9)
        q_equals_k = torch.equal(layer.q_proj.weight, layer.k_proj.weight)
    assert q_equals_k or not same, tolerance.describe(
        "test_multihead_attention_qk_roles", c, "swapped q/k projections went unnoticed", []
    )


@settings(max_examples=50)  # two modules and their backward per example
@given(c=mha_cases())
def test_multihead_attention_layer_gradients_without_input_grad(c: dict) -> None:
    """from_multihead_attention's parameter gradients equal nn.MultiheadAttention's when the inputs
    do not require grad (the first layer of a network), in float64."""
    c = {**c, "mask": "none" if c["mask"] == "is_causal" else c["mask"]}
    mha, kw = _mha_inputs(c, torch.float64)
    layer = cr.from_multihead_attention(mha)
    out_c, out_b = layer(**kw), mha(**kw, need_weights=False)[0]
    cot = randn(tuple(out_b.shape), c["seed"] + 7, torch.float64)
    keep = _rows_with_a_key(kw, c)
    (out_c * cot * keep).sum().backward()
    (out_b * cot * keep).sum().backward()
    names = ("q_proj", "k_proj", "v_proj", "out_proj")
    cand = {f"{n}.weight": getattr(layer, n).weight.grad for n in names}
    mha_q, mha_k, mha_v = _in_projections(mha)
    base = {"q_proj.weight": mha_q, "k_proj.weight": mha_k, "v_proj.weight": mha_v, "out_proj.weight": mha.out_proj.weight.grad}
    n = c["batch"] * max(c["nq"], c["nk"]) * (c["nk"] + 2) * max(c["embed_dim"], c["kdim"] or 0, c["vdim"] or 0)
    tolerance.check_gradients(
        "test_multihead_attention_layer_gradients_without_input_grad", cand, base, base, dtype=torch.float64,
        reductions=dict.fromkeys(cand, n), case=c,
    )


def _rows_with_a_key(kw: dict, c: dict) -> torch.Tensor:
    """1 on output rows whose query may attend some key, 0 on fully masked ones (where
    nn.MultiheadAttention's gradient is NaN and ConvNN defines the output as the bias)."""
    b, nq, nk = c["batch"], c["nq"], c["nk"]
    allowed = torch.ones(b, nq, nk, dtype=torch.bool)
    if "attn_mask" in kw:
        allowed &= ~kw["attn_mask"].bool()
    if "key_padding_mask" in kw:
        allowed &= ~kw["key_padding_mask"][:, None, :]
    rows = allowed.any(-1).to(torch.float64)[..., None]  # (B, L, 1)
    return rows if c["batch_first"] else rows.transpose(0, 1)


def _in_projections(mha: torch.nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of the q, k, v input projections of ``mha``."""
    if mha._qkv_same_embed_dim:
        assert mha.in_proj_weight is not None and mha.in_proj_weight.grad is not None
        gq, gk, gv = mha.in_proj_weight.grad.chunk(3)
        return gq, gk, gv
    return mha.q_proj_weight.grad, mha.k_proj_weight.grad, mha.v_proj_weight.grad  # type: ignore[return-value]
