"""Every route gives the same answer, NaN and infinities included (docs/semantics.md, "NaN and
infinities"): the gather route, the dense route, `kvt_attention` (the KVT paper's formula) and
the naive oracle, on inputs with NaN, +inf and -inf drawn into q, k, v or x.

Routes are forced through the public API: the sum kernel with k >= 2 takes the dense route (when
every value it would multiply by a zero weight is finite); a grouped kernel with one group per
channel and unit weights computes the same sum and always takes the gather route; a tiny
``memory_budget`` makes every query a chunk of its own. Finite entries are small integers, so
every route computes the same scores exactly and ties are true ties (the tie rule decides)."""

from __future__ import annotations

import math

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import naive_attention, naive_convnn

F64 = torch.float64
NAN, INF = float("nan"), float("inf")
NONFINITE = (NAN, INF, -INF)


@st.composite
def tensors(draw: st.DrawFn, shape: tuple[int, ...], special: bool) -> torch.Tensor:
    """Small integers in [-2, 2], and (when ``special``) a few NaN / +inf / -inf entries."""
    n = math.prod(shape)
    values = draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n))
    t = torch.tensor(values, dtype=F64).reshape(shape)
    if special and n:
        spots = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(NONFINITE)), min_size=1, max_size=3))
        flat = t.reshape(-1)
        for i, v in spots:
            flat[i] = v
    return t


def same_answer(a: torch.Tensor, b: torch.Tensor) -> bool:
    """NaN where NaN, the same infinities, and equal (to rounding) elsewhere."""
    if a.shape != b.shape or not torch.equal(a.isnan(), b.isnan()):
        return False
    inf_a, inf_b = a.isinf(), b.isinf()
    if not torch.equal(inf_a, inf_b) or not torch.equal(a[inf_a], b[inf_b]):
        return False
    finite = torch.isfinite(a)
    return bool(torch.allclose(a[finite], b[finite], rtol=1e-10, atol=1e-10))


def _describe(**named: torch.Tensor) -> str:
    return "\n".join(f"  {n}: {t.tolist()}" for n, t in named.items())


def _unit_grouped(config: ConvNNConfig, channels: int) -> tuple[ConvNNConfig, torch.Tensor]:
    """The sum kernel as a grouped kernel (one group per channel, unit taps): the gather route."""
    assert config.k is not None
    return config.replace(kernel="grouped", groups=channels), torch.ones(channels, 1, config.k, dtype=F64)


@st.composite
def attention_inputs(draw: st.DrawFn) -> dict[str, object]:
    b, nq, nk = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(2, 9))
    similarity = draw(st.sampled_from(["dot", "scaled_dot", "euclidean", "cosine"]))
    d = 1 if similarity == "cosine" else draw(st.integers(1, 3))  # D = 1: unit vectors are exact
    dv = draw(st.integers(1, 2))
    where = draw(st.sets(st.sampled_from(["q", "k", "v"]), min_size=1))
    q = draw(tensors((b, nq, d), "q" in where))
    k = draw(tensors((b, nk, d), "k" in where))
    v = draw(tensors((b, nk, dv), "v" in where))
    topk = draw(st.integers(2, nk))
    rho = draw(st.sampled_from(["softmax", "ones", "scores"]))
    masked = draw(st.booleans())
    allowed = None
    if masked:
        bits = draw(st.lists(st.booleans(), min_size=nq * nk, max_size=nq * nk))
        allowed = torch.tensor(bits).reshape(1, nq, nk)
    config = ConvNNConfig(k=topk, similarity=similarity, rho=rho, kernel="sum")  # type: ignore[arg-type]
    return {"q": q, "k": k, "v": v, "allowed": allowed, "config": config}


def _clear_kth(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """Rows ``(..., Nq)`` whose k-th and (k+1)-th best scores differ (NaN ranks first, NaN ties
    NaN): there torch.topk's unspecified tie order cannot change the kept set."""
    ranked = scores.sort(dim=-1, descending=True, stable=True).values
    if topk >= ranked.shape[-1]:
        return torch.ones(ranked.shape[:-1], dtype=torch.bool)
    a, b = ranked[..., topk - 1], ranked[..., topk]
    return ~((a == b) | (a.isnan() & b.isnan()))


def _case(q: list, k: list, v: list, config: ConvNNConfig, allowed: list | None = None) -> dict[str, object]:
    mask = None if allowed is None else torch.tensor(allowed, dtype=torch.bool)[None]
    return {
        "q": torch.tensor(q, dtype=F64)[None],
        "k": torch.tensor(k, dtype=F64)[None],
        "v": torch.tensor(v, dtype=F64)[None],
        "allowed": mask,
        "config": config,
    }


EXAMPLES = [
    # One NaN key among 8, k = 3: every route makes every row NaN (the NaN ranks first).
    _case([[1, 0], [0, 1]], [[1, 0], [0, 1], [1, 1], [NAN, 0], [2, 1], [-1, 0], [0, -2], [1, 2]], [[i] for i in range(8)], cr.kvt_config(3)),
    # An infinite query under euclidean: every score is -inf (a tie: the lower index wins), not
    # the +inf, -inf and NaN the expanded form 2 q.k - |k|^2 would give.
    _case([[INF], [1]], [[1], [-1], [2], [0]], [[0], [1], [2], [3]], ConvNNConfig(k=2, similarity="euclidean", kernel="sum")),
    # An infinite key under euclidean: its score is -inf for every query (last, not first).
    _case([[1], [0]], [[INF], [-1], [2], [0]], [[0], [1], [2], [3]], ConvNNConfig(k=2, similarity="euclidean", kernel="sum")),
    # A genuine -inf score fills a slot before an empty one (a disallowed candidate).
    _case([[1]], [[-INF], [1], [2]], [[5], [1], [2]], ConvNNConfig(k=3, similarity="dot", kernel="sum"), [[False, True, True]]),
    _case([[1]], [[0], [-INF], [1]], [[5], [1], [2]], ConvNNConfig(k=2, similarity="dot", kernel="sum"), [[False, True, True]]),
    # A NaN value outside the selected set (dense route, k < N) never enters.
    _case([[1]], [[2], [1], [0], [-1]], [[1], [2], [NAN], [INF]], ConvNNConfig(k=2, similarity="dot", rho="softmax", kernel="sum")),
    # A masked key with an infinite value: SDPA's dense product would give NaN; ConvNN ignores it.
    _case([[1], [0]], [[2], [1], [0]], [[1], [2], [INF]], ConvNNConfig(k=3, similarity="scaled_dot", rho="softmax", kernel="sum"), [[True, True, False], [True, False, False]]),
]


def _with_examples(test):  # type: ignore[no-untyped-def]
    for case in EXAMPLES:
        test = example(p=case)(test)
    return test


@settings(max_examples=80)  # the oracle's Python loops
@given(p=attention_inputs())
@_with_examples
def test_attention_routes_agree_on_nonfinite_input(p: dict[str, object]) -> None:
    """Gather route, dense route, the oracle (and kvt_attention where it applies) give the same answer."""
    q, k, v, allowed, config = p["q"], p["k"], p["v"], p["allowed"], p["config"]
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)
    assert isinstance(config, ConvNNConfig) and config.k is not None
    mask = allowed if isinstance(allowed, torch.Tensor) else None
    dense = cr.convnn_attention(q, k, v, config, allowed=mask)
    dense_chunked = cr.convnn_attention(q, k, v, config, allowed=mask, memory_budget=1)
    grouped, weight = _unit_grouped(config, v.shape[-1])
    gather = cr.convnn_attention(q, k, v, grouped, allowed=mask, weight=weight, memory_budget=1)
    oracle = naive_attention(q, k, v, config, allowed=mask)
    inputs = _describe(q=q, k=k, v=v) + (f"\n  allowed: {mask.int().tolist()}" if mask is not None else "")
    for name, y in (("dense route", dense), ("dense route, chunked", dense_chunked), ("gather route", gather)):
        assert same_answer(y, oracle), f"{name} differs from the oracle ({config}):\n{inputs}\n  {name}: {y.tolist()}\n  oracle: {oracle.tolist()}"
    if config.similarity == "scaled_dot" and config.rho == "softmax" and mask is None:
        paper = cr.kvt_attention(q, k, v, config.k, config.scale)
        exact = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        clear = _clear_kth(exact, config.k)
        assert same_answer(paper[clear], oracle[clear]), (
            f"kvt_attention differs from the oracle on rows with a clear k-th place:\n{inputs}\n"
            f"  kvt: {paper.tolist()}\n  oracle: {oracle.tolist()}"
        )


def test_one_nan_key_is_nan_on_every_route() -> None:
    """The reported case: one NaN key among 8 (k = 3) and among 100: NaN rows on the dense route,
    the gather route and kvt_attention alike (the NaN score ranks first and is selected)."""
    gen = torch.Generator().manual_seed(0)
    for nk in (8, 100):
        q = torch.randn(1, 4, 5, generator=gen, dtype=F64)
        k, v = (torch.randn(1, nk, 5, generator=gen, dtype=F64) for _ in range(2))
        k[0, nk // 2, 1] = NAN
        for y in (cr.scaled_dot_product_attention(q, k, v, k=3), cr.kvt_attention(q, k, v, 3)):
            assert bool(y.isnan().all()), y


@st.composite
def image_inputs(draw: st.DrawFn) -> dict[str, object]:
    b, c, n = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(2, 8))
    x = draw(tensors((b, c, n), True))
    similarity = draw(st.sampled_from(["dot", "scaled_dot", "euclidean"]))
    config = ConvNNConfig(k=draw(st.integers(2, n)), similarity=similarity, rho=draw(st.sampled_from(["softmax", "ones"])), kernel="sum")  # type: ignore[arg-type]
    return {"x": x, "config": config}


@settings(max_examples=80)  # the oracle's Python loops
@given(p=image_inputs())
def test_image_routes_agree_on_nonfinite_input(p: dict[str, object]) -> None:
    """Image form, NaN and infinities in x: dense route, gather route and the oracle agree."""
    x, config = p["x"], p["config"]
    assert isinstance(x, torch.Tensor) and isinstance(config, ConvNNConfig)
    oracle = naive_convnn(x, None, None, config)
    grouped, weight = _unit_grouped(config, x.shape[1])
    for name, y in (
        ("dense route", cr.convnn(x, None, None, config)),
        ("gather route", cr.convnn(x, weight, None, grouped, memory_budget=1)),
    ):
        assert same_answer(y, oracle), f"{name} differs from the oracle ({config}):\n{_describe(x=x)}\n  {name}: {y.tolist()}\n  oracle: {oracle.tolist()}"
