"""Every argument of the public API drawn over its range (docs/coverage.md lists which property
draws which argument): the layers and constructors against PyTorch's own modules or the naive
oracle, the step functions against their formulas written out, and the defaults that come from
PyTorch checked against PyTorch itself.

These properties exercise the reference's public API (layers and step functions are not part of
the adapter contract); float64 throughout unless a dtype is drawn.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import naive_attention, naive_convnn, resolve_geometry
from suites import tolerance
from suites.inputs import randn
from suites.strategies import GeneralCase, general_cases
from suites.ties import image_ambiguity, image_score_gain

F64 = torch.float64
SEED = st.integers(0, 2**31 - 1)


def _copy_params(layer: torch.nn.Module, conv: torch.nn.Module) -> None:
    """Give the ConvNN layer the conv's weight (flattened taps) and bias."""
    with torch.no_grad():
        layer.weight.copy_(conv.weight.reshape(layer.weight.shape))  # type: ignore[union-attr, operator]
        if conv.bias is not None:
            layer.bias.copy_(conv.bias)  # type: ignore[union-attr, operator]


@settings(max_examples=40)
@given(
    d=st.integers(1, 3), c=st.sampled_from(((1, 1), (2, 4), (4, 2), (3, 3), (4, 4))), groups_depthwise=st.booleans(),
    kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2),
    bias=st.booleans(), padding_mode=st.sampled_from(("zeros", "reflect", "replicate", "circular")),
    memory_budget=st.sampled_from((None, 64, 4096)), dtype=st.sampled_from((torch.float64, torch.float32)), seed=SEED,
)
def test_conv_layers_and_conv_config_match_torch_conv(
    d: int, c: tuple[int, int], groups_depthwise: bool, kernel: int, stride: int, padding: int, dilation: int,
    bias: bool, padding_mode: str, memory_budget: int | None, dtype: torch.dtype, seed: int,
) -> None:
    """``convnn_layer(d)(C_in, C_out, conv_config(kernel, spatial_dims=d, stride, padding,
    dilation, groups), bias, padding_mode, memory_budget, dtype)`` with an ``nn.ConvNd``'s
    parameters equals that ``nn.ConvNd`` (1-3 axes, every padding mode, grouped and depthwise)."""
    c_in, c_out = c
    groups = c_in if groups_depthwise and c_out % c_in == 0 else 1
    side = 5 if d < 3 else 4
    if padding_mode != "zeros":
        padding = min(padding, side - 1)  # reflect needs padding < the side
    config = cr.conv_config((kernel,) * d, spatial_dims=d, stride=stride, padding=padding, dilation=dilation, groups=groups)
    conv_cls = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[d - 1]
    torch.manual_seed(seed)
    conv = conv_cls(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                    padding_mode=padding_mode, dtype=dtype)
    layer_cls = cr.convnn_layer(d)
    assert layer_cls is (cr.ConvNN1d, cr.ConvNN2d, cr.ConvNN3d)[d - 1]
    if padding == 0 and padding_mode != "zeros":
        # nn.ConvNd accepts a padding mode it never uses; ConvNN refuses an inert knob by name.
        with pytest.raises(ValueError, match="padding_mode"):
            layer_cls(c_in, c_out, config, bias=bias, padding_mode=padding_mode, device="cpu", dtype=dtype)
        return
    layer = layer_cls(c_in, c_out, config, bias=bias, padding_mode=padding_mode, memory_budget=memory_budget, device="cpu", dtype=dtype)
    assert layer.weight.dtype == dtype and (layer.bias is not None) == bias
    _copy_params(layer, conv)
    x = randn((2, c_in, *(side,) * d), seed, dtype)
    if (side + 2 * padding - dilation * (kernel - 1)) < 1:
        return  # no output position: nn.ConvNd refuses it too
    with torch.no_grad():
        cand = layer(x)
        base = conv(x)
        gold = conv.double()(x.double())
    tolerance.check(
        "test_conv_layers_and_conv_config_match_torch_conv", cand, base, gold, dtype=dtype,
        reduction=c_in // groups * kernel**d,
        case={"d": d, "c": c, "groups": groups, "kernel": kernel, "stride": stride, "padding": padding,
              "dilation": dilation, "bias": bias, "padding_mode": padding_mode, "memory_budget": memory_budget, "seed": seed},
    )


@settings(max_examples=30)  # the oracle's Python loops
@given(
    heads=st.integers(1, 2), head_dim=st.integers(1, 3), n=st.integers(1, 6), s=st.integers(1, 6),
    k_frac=st.one_of(st.none(), st.floats(0.0, 1.0)), similarity=st.sampled_from(("scaled_dot", "dot", "cosine", "euclidean")),
    scale=st.one_of(st.none(), st.floats(0.1, 2.0)), random_candidates=st.booleans(), bias=st.booleans(),
    batch_first=st.booleans(), kdim=st.one_of(st.none(), st.integers(1, 4)), vdim=st.one_of(st.none(), st.integers(1, 4)),
    memory_budget=st.sampled_from((None, 64)), seed=SEED,
)
def test_attention_layer_matches_its_projections_and_the_oracle(
    heads: int, head_dim: int, n: int, s: int, k_frac: float | None, similarity: str, scale: float | None,
    random_candidates: bool, bias: bool, batch_first: bool, kdim: int | None, vdim: int | None,
    memory_budget: int | None, seed: int,
) -> None:
    """``ConvNNAttention(embed_dim, num_heads, k, similarity, scale, candidates, num_candidates,
    dropout, bias, batch_first, kdim, vdim, memory_budget, dtype)`` in eval(): its projections,
    then per head the oracle's attention with the layer's configuration, then the output
    projection."""
    embed = heads * head_dim
    num_candidates = max(1, s - 1) if random_candidates else None
    pool = num_candidates if random_candidates else s
    k = None if k_frac is None else max(1, round(k_frac * pool))
    if similarity != "scaled_dot":
        scale = None  # only scaled_dot reads it
    torch.manual_seed(seed)
    layer = cr.ConvNNAttention(
        embed, heads, k, similarity=similarity, scale=scale, candidates="random" if random_candidates else "all",
        num_candidates=num_candidates, dropout=0.3, bias=bias, batch_first=batch_first, kdim=kdim, vdim=vdim,
        memory_budget=memory_budget, device="cpu", dtype=F64,
    ).eval()
    b = 2
    q_in = randn((b, n, embed), seed + 1, F64)
    k_in = randn((b, s, kdim or embed), seed + 2, F64)
    v_in = randn((b, s, vdim or embed), seed + 3, F64)

    def lay(t: torch.Tensor) -> torch.Tensor:
        return t if batch_first else t.transpose(0, 1)

    with torch.no_grad():
        cand = lay(layer(lay(q_in), lay(k_in), lay(v_in), generator=torch.Generator().manual_seed(seed)))

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], heads, head_dim).transpose(1, 2).reshape(b * heads, t.shape[1], head_dim)

        q, kk, v = split(layer.q_proj(q_in)), split(layer.k_proj(k_in)), split(layer.v_proj(v_in))
        heads_out = naive_attention(q, kk, v, layer.config, generator=torch.Generator().manual_seed(seed))
        gold = layer.out_proj(heads_out.reshape(b, heads, n, head_dim).transpose(1, 2).reshape(b, n, embed))
    assert layer.config.k == k and layer.config.similarity == similarity and layer.config.scale == scale
    tolerance.check(
        "test_attention_layer_matches_its_projections_and_the_oracle", cand, gold, gold, dtype=F64,
        reduction=s * (head_dim + 2) + embed,
        case={"heads": heads, "head_dim": head_dim, "n": n, "s": s, "k": k, "similarity": similarity, "scale": scale,
              "num_candidates": num_candidates, "bias": bias, "batch_first": batch_first, "kdim": kdim, "vdim": vdim,
              "memory_budget": memory_budget, "seed": seed},
    )


_LAYER_CONFIGS = (
    cr.ConvNNConfig(k=3, basis="feature", kernel="full"),
    cr.ConvNNConfig(k=4, basis="position", metric="euclidean", kernel="full", padding=1),
    cr.ConvNNConfig(k=2, basis="hybrid", similarity="euclidean", rho="softmax", kernel="full"),
)


@settings(max_examples=30)  # the oracle's Python loops
@given(
    config=st.sampled_from(_LAYER_CONFIGS), c=st.tuples(st.integers(1, 2), st.integers(1, 2)), factor=st.integers(1, 2),
    bias=st.booleans(), seed=SEED,
)
def test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle(
    config: cr.ConvNNConfig, c: tuple[int, int], factor: int, bias: bool, seed: int
) -> None:
    """``PixelShuffleConvNN2d(C_in, C_out, config, factor, bias)`` equals ``pixel_unshuffle``,
    the oracle with the inner layer's parameters, ``pixel_shuffle``."""
    torch.manual_seed(seed)
    layer = cr.PixelShuffleConvNN2d(c[0], c[1], config, factor, bias=bias).double()
    side = 2 * factor
    x = randn((1, c[0], side, side + factor), seed, F64)
    with torch.no_grad():
        cand = layer(x)
        inner = layer.inner
        gold = F.pixel_shuffle(naive_convnn(F.pixel_unshuffle(x, factor), inner.weight, inner.bias, config), factor)
    assert (inner.bias is not None) == bias
    tolerance.check(
        "test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", cand, gold, gold, dtype=F64,
        reduction=config.k * c[0] * factor**2 + 4,  # type: ignore[operator]
        case={"config": config, "c": c, "factor": factor, "bias": bias, "seed": seed},
    )


@settings(max_examples=30)  # the oracle's Python loops
@given(
    d=st.integers(1, 3), c=st.tuples(st.integers(1, 3), st.integers(1, 4)), ratio=st.floats(0.0, 1.0),
    conv_kernel_size=st.integers(1, 3), bias=st.booleans(), seed=SEED,
)
def test_branching_layer_fuses_a_convnn_and_a_conv_branch(
    d: int, c: tuple[int, int], ratio: float, conv_kernel_size: int, bias: bool, seed: int
) -> None:
    """``BranchingConvNN(C_in, C_out, config, ratio, conv_kernel_size, spatial_dims, bias)``: the
    oracle's ConvNN branch (``round(ratio * C_out)`` channels) and a 'same' conv branch,
    concatenated, then the 1x1 fusion conv."""
    config = cr.ConvNNConfig(k=3, basis="feature", kernel="full")
    torch.manual_seed(seed)
    layer = cr.BranchingConvNN(c[0], c[1], config, ratio=ratio, conv_kernel_size=conv_kernel_size, spatial_dims=d, bias=bias).double()
    x = randn((2, c[0], *(3,) * d), seed, F64)
    conv_fn = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    with torch.no_grad():
        cand = layer(x)
        parts = []
        if layer.convnn is not None:
            parts.append(naive_convnn(x, layer.convnn.weight, layer.convnn.bias, config))
        if layer.conv is not None:
            parts.append(conv_fn(x, layer.conv.weight, layer.conv.bias, padding="same"))
        gold = conv_fn(torch.cat(parts, dim=1), layer.fuse.weight, layer.fuse.bias)
    assert layer.convnn_channels == round(ratio * c[1])
    tolerance.check(
        "test_branching_layer_fuses_a_convnn_and_a_conv_branch", cand, gold, gold, dtype=F64,
        reduction=(3 * c[0] + conv_kernel_size**d * c[0]) * c[1],
        case={"d": d, "c": c, "ratio": ratio, "conv_kernel_size": conv_kernel_size, "bias": bias, "seed": seed},
    )


@given(d=st.integers(1, 3), c=st.integers(1, 3), seed=SEED)
def test_coordinate_encoding_appends_linspace_channels(d: int, c: int, seed: int) -> None:
    """``CoordinateEncoding()`` (no arguments of its own) appends channel ``C + a`` holding
    ``linspace(-1, 1)`` along axis a."""
    spatial = tuple(2 + (seed >> (4 * a)) % 4 for a in range(d))
    x = randn((2, c, *spatial), seed, F64)
    y = cr.CoordinateEncoding()(x)
    assert torch.equal(y[:, :c], x)
    for a, size in enumerate(spatial):
        line = torch.linspace(-1, 1, size, dtype=F64)
        view = [1] * d
        view[a] = size
        assert torch.allclose(y[:, c + a], line.reshape(view).expand(spatial)), (d, c, spatial, a)


@given(
    b=st.integers(1, 2), nq=st.integers(1, 4), k=st.integers(1, 4), c=st.integers(1, 4), g=st.sampled_from((1, 2)),
    m=st.integers(1, 6), shared=st.booleans(), rho=st.sampled_from(("ones", "softmax", "scores")),
    rho_scale=st.floats(0.25, 4.0), with_valid=st.booleans(), bias=st.booleans(), seed=SEED,
)
def test_step_functions_match_their_formulas(
    b: int, nq: int, k: int, c: int, g: int, m: int, shared: bool, rho: str, rho_scale: float,
    with_valid: bool, bias: bool, seed: int,
) -> None:
    """``gather_neighbours(values, index)``, ``rho_weights(scores, valid, rho, rho_scale)``,
    ``apply_kernel(neighbours, weight, bias, kernel, groups)``, ``aggregate_as_conv1d(neighbours,
    weight, bias, groups)`` and ``Neighbours(index, score, valid)`` equal their formulas written
    out as loops."""
    gen = torch.Generator().manual_seed(seed)
    c_in = c * g
    values = randn((b, m, c_in), seed, F64)
    index = torch.randint(0, m, (nq, k) if shared else (b, nq, k), generator=gen)
    got = cr.gather_neighbours(values, index)
    for i in range(b):
        for q in range(nq):
            for t in range(k):
                row = index[q, t] if shared else index[i, q, t]
                assert torch.equal(got[i, q, t], values[i, row])
    scores = randn((b, nq, k), seed + 1, F64)
    valid = torch.rand((b, nq, k), generator=gen) < 0.7 if with_valid else None
    rho_scale = rho_scale if rho == "softmax" else 1.0  # only softmax reads it (elsewhere refused as inert)
    w = cr.rho_weights(scores, valid, rho, rho_scale)
    ok = torch.ones_like(scores, dtype=torch.bool) if valid is None else valid
    for i in range(b):
        for q in range(nq):
            keep = ok[i, q]
            want = torch.zeros(k, dtype=F64)
            if rho == "ones":
                want[keep] = 1.0
            elif rho == "scores":
                want[keep] = scores[i, q][keep]
            elif bool(keep.any()):
                e = torch.exp(rho_scale * scores[i, q][keep] - (rho_scale * scores[i, q][keep]).max())
                want[keep] = e / e.sum()
            assert torch.allclose(w[i, q], want, atol=1e-12), (rho, rho_scale, w[i, q], want)
    nb = cr.Neighbours(index, scores[0] if shared else scores, valid if not shared else None)
    assert nb.index is index and nb.valid is (valid if not shared else None)
    c_out = 2 * g
    weight = randn((c_out, c, k), seed + 2, F64)
    bvec = randn((c_out,), seed + 3, F64) if bias else None
    u = got * w[..., None]
    y = cr.apply_kernel(u, weight, bvec, "full" if g == 1 else "grouped", g)
    want_y = torch.zeros(b, nq, c_out, dtype=F64) + (0 if bvec is None else bvec)
    for o in range(c_out):
        grp = o // (c_out // g)
        for t in range(k):
            for ci in range(c):
                want_y[:, :, o] += weight[o, ci, t] * u[:, :, t, grp * c + ci]
    assert torch.allclose(y, want_y, atol=1e-10), (y - want_y).abs().max()
    conv_view = cr.aggregate_as_conv1d(u, weight, bvec, g)
    assert torch.allclose(conv_view.transpose(1, 2), want_y, atol=1e-10)
    assert torch.allclose(cr.apply_kernel(u, None, None, "sum"), u.sum(dim=2), atol=1e-12)


def test_defaults_taken_from_pytorch_are_pytorchs() -> None:
    """The defaults that come from PyTorch, checked against PyTorch (not against this project):
    SDPA's scale 1/sqrt(D) (a scaled_dot config with scale None equals
    ``F.scaled_dot_product_attention`` without one, and ``kvt_config``'s too), and
    ``ConvNNAttention``'s constructor defaults equal ``nn.MultiheadAttention``'s (dropout, bias,
    batch_first, kdim, vdim), its output equal to an ``nn.MultiheadAttention`` it is built from."""
    g = torch.Generator().manual_seed(0)
    for d in (1, 3, 8, 64):
        q, k, v = (torch.randn(2, 5, d, generator=g, dtype=F64) for _ in range(3))
        want = F.scaled_dot_product_attention(q, k, v)
        for config in (cr.ConvNNConfig(k=5, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum"), cr.kvt_config(5)):
            got = cr.convnn_attention(q, k, v, config)
            assert torch.allclose(got, want, atol=1e-12), (d, config, (got - want).abs().max())
        got = cr.scaled_dot_product_attention(q, k, v)
        assert torch.allclose(got, want, atol=1e-12), d
    ours = inspect.signature(cr.ConvNNAttention.__init__).parameters
    theirs = inspect.signature(torch.nn.MultiheadAttention.__init__).parameters
    for name in ("dropout", "bias", "batch_first", "kdim", "vdim"):
        assert ours[name].default == theirs[name].default, (name, ours[name].default, theirs[name].default)
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(6, 2, dtype=F64).eval()
    x = torch.randn(4, 2, 6, generator=g, dtype=F64)
    with torch.no_grad():
        want = mha(x, x, x, need_weights=False)[0]
        got = cr.from_multihead_attention(mha).eval()(x)
    assert torch.allclose(got, want, atol=1e-12), (got - want).abs().max()
    assert math.isclose(cr.KVTAttention(8, 2, 3).scale, (8 // 2) ** -0.5)  # the paper's qk_scale default, head_dim**-0.5


@settings(max_examples=30)  # the oracle's Python loops
@given(case=general_cases())
def test_border_in_bounds_matches_the_oracle(case: GeneralCase) -> None:
    """``border='in_bounds'`` (real tokens only; it admits no padding) on any configuration without
    padding equals the oracle, which reads the knob itself; with padding it is refused."""
    c = case.config
    try:
        inside = c.replace(border="in_bounds")
    except ValueError as exc:
        assert "border='in_bounds' admits no padding" in str(exc) or "padding" in str(exc), exc
        return
    t = case.tensors(F64)
    reject_ambiguous = image_ambiguity(t["x"], inside, generator=case.generator(), scored_dim=case.in_channels + 3)  # type: ignore[arg-type]
    if reject_ambiguous is not None:
        return
    cand = cr.convnn(t["x"], t["weight"], t["bias"], inside, generator=case.generator())  # type: ignore[arg-type]
    gold = naive_convnn(t["x"], t["weight"], t["bias"], inside, generator=case.generator())  # type: ignore[arg-type]
    tolerance.check(
        "test_border_in_bounds_matches_the_oracle", cand, gold, gold, dtype=F64, reduction=case.reduction,
        case=case, score_gain=image_score_gain(t["x"], inside, generator=case.generator()),  # type: ignore[arg-type]
    )


def _kvt_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int, scale: float) -> torch.Tensor:
    """The KVT paper's attention written out: scores, keep each row's top-k, softmax, times v."""
    s = (q @ k.transpose(-2, -1)) * scale
    kth = s.topk(topk, dim=-1).values[..., -1:]
    return torch.softmax(s.masked_fill(s < kth, float("-inf")), dim=-1) @ v


@settings(max_examples=40)
@given(
    heads=st.integers(1, 3), head_dim=st.integers(1, 3), n=st.integers(1, 7), k_frac=st.floats(0.0, 1.0),
    qkv_bias=st.booleans(), qk_scale=st.one_of(st.none(), st.floats(0.1, 2.0)), seed=SEED,
)
def test_kvt_block_arguments_match_the_paper(
    heads: int, head_dim: int, n: int, k_frac: float, qkv_bias: bool, qk_scale: float | None, seed: int
) -> None:
    """``KVTAttention(dim, num_heads, topk, qkv_bias, qk_scale)`` in eval() equals the paper's
    block written out (one qkv projection, per head the top-k masked softmax, the projection);
    qk_scale None is the paper's ``head_dim ** -0.5``."""
    dim = heads * head_dim
    topk = max(1, round(k_frac * n))
    torch.manual_seed(seed)
    block = cr.KVTAttention(dim, heads, topk, qkv_bias=qkv_bias, qk_scale=qk_scale).double().eval()
    assert (block.qkv.bias is not None) == qkv_bias
    scale = head_dim**-0.5 if qk_scale is None else qk_scale
    x = randn((2, n, dim), seed, F64)
    with torch.no_grad():
        cand = block(x)
        qkv = block.qkv(x).reshape(2, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        scores = (qkv[0] @ qkv[1].transpose(-2, -1)) * scale
        if topk < n:  # a tie at the k-th place has no portable answer: leave such inputs out
            top = scores.topk(topk + 1, dim=-1).values
            if bool(((top[..., -2] - top[..., -1]).abs() < 1e-9).any()):
                return
        y = _kvt_formula(qkv[0], qkv[1], qkv[2], topk, scale)
        gold = block.proj(y.transpose(1, 2).reshape(2, n, dim))
    tolerance.check(
        "test_kvt_block_arguments_match_the_paper", cand, gold, gold, dtype=F64, reduction=n * (head_dim + 2) + dim,
        case={"heads": heads, "head_dim": head_dim, "n": n, "topk": topk, "qkv_bias": qkv_bias, "qk_scale": qk_scale, "seed": seed},
    )


@settings(max_examples=40)
@given(
    heads=st.integers(1, 2), head_dim=st.integers(1, 3), n=st.integers(1, 6), s=st.integers(1, 6),
    k_frac=st.one_of(st.none(), st.floats(0.0, 1.0)), memory_budget=st.sampled_from((None, 64)), seed=SEED,
)
def test_from_multihead_attention_and_sdpa_twin_with_k(
    heads: int, head_dim: int, n: int, s: int, k_frac: float | None, memory_budget: int | None, seed: int
) -> None:
    """``from_multihead_attention(mha, k)`` and ``scaled_dot_product_attention(..., k,
    memory_budget)``: with k of the S keys, each query attends to its top-k by the paper's
    formula (k None: nn.MultiheadAttention / F.scaled_dot_product_attention themselves)."""
    embed = heads * head_dim
    k = None if k_frac is None else max(1, round(k_frac * s))
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True, dtype=F64).eval()
    q_in, kv_in = randn((2, n, embed), seed, F64), randn((2, s, embed), seed + 1, F64)
    scale = head_dim**-0.5
    with torch.no_grad():
        wq, wk, wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(2, t.shape[1], heads, head_dim).transpose(1, 2)

        q, kk, v = split(F.linear(q_in, wq, bq)), split(F.linear(kv_in, wk, bk)), split(F.linear(kv_in, wv, bv))
        scores = (q @ kk.transpose(-2, -1)) * scale
        if k is not None and k < s:
            top = scores.topk(k + 1, dim=-1).values
            if bool(((top[..., -2] - top[..., -1]).abs() < 1e-9).any()):
                return  # a tie at the k-th place
        heads_gold = F.scaled_dot_product_attention(q, kk, v) if k is None else _kvt_formula(q, kk, v, k, scale)
        gold = mha.out_proj(heads_gold.transpose(1, 2).reshape(2, n, embed))
        layer = cr.from_multihead_attention(mha, k=k).eval()
        cand = layer(q_in, kv_in, kv_in)
        twin = cr.scaled_dot_product_attention(q, kk, v, k=k, memory_budget=memory_budget)
    case = {"heads": heads, "head_dim": head_dim, "n": n, "s": s, "k": k, "memory_budget": memory_budget, "seed": seed}
    tolerance.check("test_from_multihead_attention_and_sdpa_twin_with_k", cand, gold, gold, dtype=F64, reduction=s * (head_dim + 2) + embed, case=case)
    tolerance.check("test_from_multihead_attention_and_sdpa_twin_with_k", twin, heads_gold, heads_gold, dtype=F64, reduction=s * (head_dim + 2), case=case)


@settings(max_examples=30)  # the oracle's Python loops
@given(
    nq=st.integers(1, 6), nk=st.integers(1, 8), d=st.integers(1, 4), dv=st.integers(1, 3), c_out=st.integers(1, 3),
    k_frac=st.floats(0.0, 1.0), similarity=st.sampled_from(("cosine", "euclidean", "dot", "scaled_dot")),
    rho=st.sampled_from(("ones", "softmax", "scores")), bias=st.booleans(), masked=st.booleans(),
    random_candidates=st.booleans(), memory_budget=st.sampled_from((None, 64)), seed=SEED,
)
def test_weighted_attention_and_its_neighbours_match_the_oracle(
    nq: int, nk: int, d: int, dv: int, c_out: int, k_frac: float, similarity: str, rho: str, bias: bool, masked: bool,
    random_candidates: bool, memory_budget: int | None, seed: int,
) -> None:
    """``convnn_attention(q, k, v, config, allowed, weight, bias, generator, memory_budget)`` with
    the full kernel equals the oracle's, and ``attention_neighbours(q, k, config, allowed,
    generator, memory_budget)`` picks only allowed keys, from the seeded draw, independently of
    the budget."""
    pool = max(1, nk - 1) if random_candidates else nk
    k = max(1, round(k_frac * pool))
    extra = {"candidates": "random", "num_candidates": pool} if random_candidates else {}
    config = cr.ConvNNConfig(k=k, basis="feature", similarity=similarity, rho=rho, kernel="full", **extra)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    q, kk, v = randn((2, nq, d), seed, F64), randn((2, nk, d), seed + 1, F64), randn((2, nk, dv), seed + 2, F64)
    allowed = (torch.rand((2, nq, nk), generator=gen) < 0.7) if masked else None
    weight = randn((c_out, dv, k), seed + 3, F64)
    b = randn((c_out,), seed + 4, F64) if bias else None
    selection = config.replace(kernel="sum")  # the selection alone takes no weight
    s64 = cr.attention_neighbours(q, kk, selection, allowed=allowed, generator=torch.Generator().manual_seed(seed))
    scores = s64.score
    if k < pool:  # leave out a near-tie at the k-th place (no portable answer)
        full = cr.attention_neighbours(q, kk, selection.replace(k=pool), allowed=allowed, generator=torch.Generator().manual_seed(seed))
        top = full.score
        filled = full.valid if full.valid is not None else torch.ones_like(top, dtype=torch.bool)
        gap = (top[..., k - 1] - top[..., k]).abs()
        if bool(((gap < 1e-9) & filled[..., k]).any()):
            return
    cand = cr.convnn_attention(q, kk, v, config, allowed=allowed, weight=weight, bias=b,
                               generator=torch.Generator().manual_seed(seed), memory_budget=memory_budget)
    gold = naive_attention(q, kk, v, config, allowed=allowed, weight=weight, bias=b, generator=torch.Generator().manual_seed(seed))
    case = {"nq": nq, "nk": nk, "d": d, "dv": dv, "c_out": c_out, "config": config, "bias": bias, "masked": masked,
            "memory_budget": memory_budget, "seed": seed}
    tolerance.check(
        "test_weighted_attention_and_its_neighbours_match_the_oracle", cand, gold, gold, dtype=F64,
        reduction=k * dv + d, case=case, score_gain=float(scores.abs().max()) if rho == "softmax" and scores.numel() else 0.0,
    )
    again = cr.attention_neighbours(q, kk, selection, allowed=allowed, generator=torch.Generator().manual_seed(seed), memory_budget=memory_budget)
    assert torch.equal(again.index, s64.index), case
    if allowed is not None:
        valid = s64.valid if s64.valid is not None else torch.ones_like(s64.index, dtype=torch.bool)
        picked = allowed.gather(-1, s64.index.expand(2, -1, -1))
        assert bool(picked[valid].all()), f"a masked key was selected: {case}"


@settings(max_examples=40)
@given(h=st.integers(1, 5), w=st.integers(1, 5), frac=st.floats(0.0, 1.0), keep=st.floats(0.2, 1.0), seed=SEED)
def test_position_table_of_a_candidate_subset(h: int, w: int, frac: float, keep: float, seed: int) -> None:
    """``position_table(geometry, config, device, cand_index)`` over a random subset of the grid:
    each query's k nearest candidates of the subset (euclidean, integer coordinates), nearest
    first, equal distances to the lower index (the canonical rule)."""
    gen = torch.Generator().manual_seed(seed)
    n = h * w
    subset = torch.randperm(n, generator=gen)[: max(1, round(keep * n))].sort().values
    k = max(1, round(frac * subset.numel()))
    config = cr.ConvNNConfig(k=k, basis="position", metric="euclidean", kernel="full")
    geometry = resolve_geometry(config, (h, w))
    index, score = cr.position_table(geometry, config, torch.device("cpu"), cand_index=subset)
    pos = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(n, 2).double()
    for qi in range(n):
        dist = ((pos[subset] - pos[qi]) ** 2).sum(-1)
        order = sorted(range(subset.numel()), key=lambda j: (float(dist[j]), int(subset[j])))
        want = subset[order[:k]]
        assert torch.equal(index[qi], want), f"query {qi}: {index[qi].tolist()} != {want.tolist()} ({h}x{w}, k={k}, subset {subset.tolist()})"
    assert bool((score[:, :-1] >= score[:, 1:]).all()), "scores not in descending order"


@settings(max_examples=30)
@given(case=general_cases(candidates=("random",), bases=("feature", "hybrid")), budget=st.sampled_from((None, 64)))
def test_neighbours_of_random_candidates_follow_the_seed(case: GeneralCase, budget: int | None) -> None:
    """``neighbours(x, config, generator, memory_budget)``: the selection is a function of the
    generator's seed and independent of the budget, and its scores are those convnn weighs with
    (the slots of rho='scores' with a sum kernel and ones elsewhere reproduce the output)."""
    c = case.config
    t = case.tensors(F64)
    first = cr.neighbours(t["x"], c, generator=case.generator(), memory_budget=budget)  # type: ignore[arg-type]
    again = cr.neighbours(t["x"], c, generator=case.generator())  # type: ignore[arg-type]
    if image_ambiguity(t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3) is not None:  # type: ignore[arg-type]
        return
    assert torch.equal(first.index, again.index), case
    assert torch.allclose(first.score, again.score, atol=1e-12), case
