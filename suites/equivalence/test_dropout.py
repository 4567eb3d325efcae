"""Attention dropout: off in ``eval()``, unbiased in ``train()``.

Dropout draws from torch's global RNG, so no single output can be compared with a reference.
Two properties pin it down:

- in ``eval()`` a layer with dropout p computes exactly what the same layer with p = 0 computes,
  whatever the global RNG's state (and ``train()`` with p = 0 too);
- in ``train()`` (and through ``dropout_p`` of the functional entry points) the mean of N
  independent draws is the dropout-free output, within a Hoeffding bound. Each draw of an output
  element is ``sum_j m_j / (1 - p) * w_j v_j`` with masks ``m_j`` in {0, 1}: it lies in an
  interval of width ``R = sum_j |w_j v_j| / (1 - p)`` (``w`` the softmax weights of the selected
  slots, computed here in float64), so ``P(|mean - E| >= t) <= 2 exp(-2 N t^2 / R^2)``. With
  ``t = R sqrt(ln(2 / delta) / (2 N))`` and ``delta = 1e-9`` a correct implementation fails an
  element with probability at most 1e-9 (and the examples are seeded, so a run is repeatable).
  A dropout that forgets the ``1 / (1 - p)`` rescale is off by ``p |E|``, which the bound
  excludes for p in [0.2, 0.8] when the values are positive (``|E| = (1 - p) R``).

The properties exercise the reference's layers and functional entry points (the contract's
``attention()`` takes no dropout).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import naive_attention
from suites.inputs import randn

#: Draws per property example, and the probability a correct element fails its bound.
DRAWS = 2000
DELTA = 1e-9
F64 = torch.float64


def _hoeffding(width: torch.Tensor) -> torch.Tensor:
    """The half-width t of the bound for ranges of width ``width`` over `DRAWS` draws."""
    return width * math.sqrt(math.log(2 / DELTA) / (2 * DRAWS))


def _dense_weights(q: torch.Tensor, k: torch.Tensor, k_sel: int, scale: float) -> torch.Tensor:
    """Softmax weights ``(B, Nq, Nk)`` over each query's ``k_sel`` best keys (0 elsewhere), float64."""
    s = (q.double() @ k.double().transpose(1, 2)) * scale
    top = s.topk(k_sel, dim=-1).indices
    keep = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, top, True)
    return torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)


def _report(prop: str, err: torch.Tensor, bound: torch.Tensor, case: dict[str, object], mean: torch.Tensor, gold: torch.Tensor) -> None:
    ratio = err / bound
    worst = int(ratio.argmax())
    if bool((err > bound).any()):
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), err.shape))
        raise AssertionError(
            f"{prop} [kind: mismatch]: the mean of {DRAWS} dropout draws is not the dropout-free output\n"
            f"  case: {case}\n  worst element {idx}: mean {mean.flatten()[worst].item():.6g}, "
            f"dropout-free {gold.flatten()[worst].item():.6g}, |diff| {err.flatten()[worst].item():.3g} > "
            f"Hoeffding bound {bound.flatten()[worst].item():.3g} (delta {DELTA}, {DRAWS} draws)"
        )


@settings(max_examples=15, deadline=None)
@given(
    nq=st.integers(1, 5), nk=st.integers(2, 40), d=st.integers(1, 4), dv=st.integers(1, 3),
    frac=st.floats(0.0, 1.0), p=st.floats(0.2, 0.8), seed=st.integers(0, 2**31 - 1),
)
def test_attention_dropout_is_unbiased(nq: int, nk: int, d: int, dv: int, frac: float, p: float, seed: int) -> None:
    """``convnn_attention(..., dropout_p=p)``: the mean over `DRAWS` draws (one call on the inputs
    repeated along the batch, every element its own masks) is the oracle's dropout-free output
    within the Hoeffding bound; k from 1 to Nk (the gather route for small k, the dense one for
    large k)."""
    k_sel = max(1, round(frac * nk))
    config = cr.ConvNNConfig(k=k_sel, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum")
    q, k = randn((1, nq, d), seed, F64), randn((1, nk, d), seed + 1, F64)
    v = randn((1, nk, dv), seed + 2, F64).abs() + 0.5  # positive: |E| = (1 - p) R
    torch.manual_seed(seed)
    draws = cr.convnn_attention(q.expand(DRAWS, -1, -1), k.expand(DRAWS, -1, -1), v.expand(DRAWS, -1, -1), config, dropout_p=p)
    gold = naive_attention(q, k, v, config)[0]
    w = _dense_weights(q, k, k_sel, 1 / math.sqrt(d))[0]
    bound = _hoeffding((w @ v[0].abs()) / (1 - p)) + 1e-12 * gold.abs()
    mean = draws.mean(0)
    case = {"nq": nq, "nk": nk, "d": d, "dv": dv, "k": k_sel, "p": p, "seed": seed}
    _report("test_attention_dropout_is_unbiased", (mean - gold).abs(), bound, case, mean, gold)


@settings(max_examples=10, deadline=None)
@given(heads=st.sampled_from((1, 2)), n=st.integers(2, 8), p=st.floats(0.2, 0.8), seed=st.integers(0, 2**31 - 1))
def test_attention_layer_dropout_is_unbiased_in_train_mode(heads: int, n: int, p: float, seed: int) -> None:
    """``ConvNNAttention(dropout=p).train()`` (every key, batch_first): the mean of `DRAWS` draws
    is the ``eval()`` output within the Hoeffding bound of the output projection's ranges."""
    embed = 2 * heads
    torch.manual_seed(seed)
    layer = cr.ConvNNAttention(embed, heads, dropout=p, batch_first=True, dtype=F64)
    x = randn((1, n, embed), seed + 1, F64)
    with torch.no_grad():
        gold = layer.eval()(x)[0]
        draws = layer.train()(x.expand(DRAWS, -1, -1))
        dh = embed // heads
        q = layer.q_proj(x).reshape(n, heads, dh).transpose(0, 1)
        kk = layer.k_proj(x).reshape(n, heads, dh).transpose(0, 1)
        v = layer.v_proj(x).reshape(n, heads, dh).transpose(0, 1)
        w = _dense_weights(q, kk, n, 1 / math.sqrt(dh))  # (H, n, n)
        width = ((w @ v.abs()) / (1 - p)).transpose(0, 1).reshape(n, embed)  # range of each head output
        out_width = width @ layer.out_proj.weight.abs().t()  # range of each projected output
    bound = _hoeffding(out_width) + 1e-12 * gold.abs()
    mean = draws.mean(0)
    case = {"heads": heads, "embed_dim": embed, "n": n, "dropout": p, "seed": seed}
    _report("test_attention_layer_dropout_is_unbiased_in_train_mode", (mean - gold).abs(), bound, case, mean, gold)


@settings(max_examples=10, deadline=None)
@given(heads=st.sampled_from((1, 2)), n=st.integers(1, 8), k=st.integers(1, 8), p=st.floats(0.1, 0.9), seed=st.integers(0, 2**31 - 1))
def test_eval_mode_turns_attention_dropout_off(heads: int, n: int, k: int, p: float, seed: int) -> None:
    """In ``eval()`` a ConvNNAttention with dropout p and a KVTAttention with attn_drop and proj_drop p are
    bitwise the layers with p = 0 (whatever the global RNG draws); ``train()`` with p = 0 too."""
    embed = 2 * heads
    k = min(k, n)
    torch.manual_seed(seed)
    layer = cr.ConvNNAttention(embed, heads, k, dropout=p, dtype=F64)
    plain = cr.ConvNNAttention(embed, heads, k, dropout=0.0, dtype=F64)
    plain.load_state_dict(layer.state_dict())
    kvt = cr.KVTAttention(embed, heads, k, attn_drop=p, proj_drop=p).double()
    kvt_plain = cr.KVTAttention(embed, heads, k, attn_drop=0.0).double()
    kvt_plain.load_state_dict(kvt.state_dict())
    x = randn((n, 2, embed), seed + 1, F64)  # (L, B, E): batch_first=False
    xb = x.transpose(0, 1).contiguous()  # KVT takes (B, N, C)
    case = {"heads": heads, "n": n, "k": k, "p": p, "seed": seed}
    with torch.no_grad():
        for name, mod, ref, inp in (("ConvNNAttention", layer, plain, x), ("KVTAttention", kvt, kvt_plain, xb)):
            want = ref.eval()(inp)
            for draw_seed in (seed, seed + 1):
                torch.manual_seed(draw_seed)
                got = mod.eval()(inp)
                assert torch.equal(got, want), f"{name} in eval() with dropout {p} differs from dropout 0 by {(got - want).abs().max().item():.3g}: {case}"
            torch.manual_seed(seed)
            assert torch.equal(ref.train()(inp), want), f"{name} in train() with dropout 0 differs from eval(): {case}"


@settings(max_examples=10, deadline=None)
@given(nq=st.integers(1, 5), nk=st.integers(1, 8), d=st.integers(1, 4), frac=st.floats(0.0, 1.0), p=st.floats(0.2, 0.8), seed=st.integers(0, 2**31 - 1))
def test_sdpa_and_kvt_dropout_are_unbiased(nq: int, nk: int, d: int, frac: float, p: float, seed: int) -> None:
    """``scaled_dot_product_attention(..., dropout_p=p)`` and ``kvt_attention(..., dropout_p=p)``:
    the mean of `DRAWS` draws is the dropout-free output (F.scaled_dot_product_attention, and
    the same with dropout_p=0 for KVT's top-k) within the Hoeffding bound."""
    topk = max(1, round(frac * nk))
    q, k = randn((1, nq, d), seed, F64), randn((1, nk, d), seed + 1, F64)
    v = randn((1, nk, 2), seed + 2, F64).abs() + 0.5
    rep = [t.expand(DRAWS, -1, -1) for t in (q, k, v)]
    case = {"nq": nq, "nk": nk, "d": d, "topk": topk, "p": p, "seed": seed}
    torch.manual_seed(seed)
    sdpa_draws = cr.scaled_dot_product_attention(*rep, dropout_p=p)
    gold = torch.nn.functional.scaled_dot_product_attention(q, k, v)[0]
    w = _dense_weights(q, k, nk, 1 / math.sqrt(d))[0]
    bound = _hoeffding((w @ v[0]) / (1 - p)) + 1e-12 * gold.abs()
    _report("test_sdpa_and_kvt_dropout_are_unbiased", (sdpa_draws.mean(0) - gold).abs(), bound, {**case, "fn": "sdpa"}, sdpa_draws.mean(0), gold)
    torch.manual_seed(seed)
    kvt_draws = cr.kvt_attention(*rep, topk, dropout_p=p)
    kvt_gold = cr.kvt_attention(q, k, v, topk)[0]
    w = _dense_weights(q, k, topk, 1 / math.sqrt(d))[0]
    bound = _hoeffding((w @ v[0]) / (1 - p)) + 1e-12 * kvt_gold.abs()
    _report("test_sdpa_and_kvt_dropout_are_unbiased", (kvt_draws.mean(0) - kvt_gold).abs(), bound, {**case, "fn": "kvt"}, kvt_draws.mean(0), kvt_gold)
