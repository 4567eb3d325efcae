"""Limits and symmetries worth stating as properties: batch independence, token permutation
equivariance (feature basis, k = N), translation equivariance (position basis, away from the
borders), k = 1 as a gather, the k = N dense limit, bitwise CPU determinism, and independence of
the memory budget (for implementations that take one)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import per_axis
from convnn_ref.testing import naive_convnn
from suites import tolerance
from suites.equivalence._common import DEVICES, claims_tie_rule, options, reject, skip_outside, torch_conv
from suites.implementations import Implementation, Shapes
from suites.strategies import EDGE_CONVS, ConvCase, GeneralCase, conv_cases, general_cases, randn
from suites.ties import image_ambiguity, image_score_gain

F64 = torch.float64
SEQ = st.integers(1, 12)


def _tokens_shapes(d: int, n: int) -> Shapes:
    """The shapes of the token properties' input ``(2, d, n)``."""
    return Shapes(form="image", batch=2, channels=d, spatial=(n,))


@pytest.mark.parametrize("device", DEVICES)
@given(case=general_cases(max_tokens=25))
def test_batch_independence(impl: Implementation, device: str, case: GeneralCase) -> None:
    """Each batch element's output is the output of that element alone (random draws shared by the batch)."""
    c = case.config
    skip_outside(impl, c, form="image", dtype=F64, device=device, spatial_dims=len(case.spatial), shapes=case.shapes())
    t = case.tensors(F64, device)
    x2 = torch.cat([t["x"], randn(tuple(t["x"].shape), case.seed + 9, F64, device)])  # type: ignore[union-attr]
    reject(impl, image_ambiguity(x2, c, generator=case.generator(), scored_dim=case.in_channels + 3))
    opts = options(impl, memory_budget=case.memory_budget)
    both = impl.convnn(x2, t["weight"], t["bias"], c, generator=case.generator(), **opts)
    alone = impl.convnn(x2[-1:], t["weight"], t["bias"], c, generator=case.generator(), **opts)
    tolerance.check(
        "test_batch_independence",
        both[-1:],
        alone,
        alone,
        dtype=F64,
        reduction=case.reduction,
        case=case,
        score_gain=image_score_gain(x2, c, generator=case.generator()),
    )


@pytest.mark.parametrize("device", DEVICES)
@given(
    n=SEQ,
    d=st.integers(1, 4),
    similarity=st.sampled_from(("cosine", "euclidean", "dot", "scaled_dot")),
    seed=st.integers(0, 2**31 - 1),
)
def test_token_permutation_equivariance(
    impl: Implementation, device: str, n: int, d: int, similarity: str, seed: int
) -> None:
    """Feature basis with k = N, softmax and the sum kernel: permuting the tokens permutes the output."""
    config = cr.ConvNNConfig(k=n, basis="feature", similarity=similarity, rho="softmax", kernel="sum")  # type: ignore[arg-type]
    skip_outside(impl, config, form="image", dtype=F64, device=device, spatial_dims=1, shapes=_tokens_shapes(d, n))
    x = randn((2, d, n), seed, F64, device)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    y = impl.convnn(x, None, None, config)
    yp = impl.convnn(x[..., perm], None, None, config)
    case = {"n": n, "d": d, "similarity": similarity, "seed": seed}
    tolerance.check(
        "test_token_permutation_equivariance", yp, y[..., perm], y[..., perm], dtype=F64, reduction=2 * n * d, case=case
    )


@pytest.mark.parametrize("device", DEVICES)
@given(nq=SEQ, nk=SEQ, d=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_key_permutation_invariance(impl: Implementation, device: str, nq: int, nk: int, d: int, seed: int) -> None:
    """Dense attention is order-free in its keys: permuting keys and values together leaves the output unchanged."""
    config = cr.ConvNNConfig(k=nk, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum")
    shapes = Shapes(form="attention", batch=1, nq=nq, nk=nk, dim=d, vdim=d, self_attention=False)
    skip_outside(impl, config, form="attention", dtype=F64, device=device, shapes=shapes)
    q, k, v = (randn((1, n, d), seed + i, F64, device) for i, n in enumerate((nq, nk, nk)))
    perm = torch.randperm(nk, generator=torch.Generator().manual_seed(seed)).to(device)
    y = impl.attention(q, k, v, config)
    yp = impl.attention(q, k[:, perm], v[:, perm], config)
    tolerance.check(
        "test_key_permutation_invariance",
        yp,
        y,
        y,
        dtype=F64,
        reduction=2 * nk * d,
        case={"nq": nq, "nk": nk, "d": d, "seed": seed},
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(1, 2), paddings=("valid",)), shift=st.integers(1, 3))
def test_translation_equivariance(impl: Implementation, device: str, case: ConvCase, shift: int) -> None:
    """Position basis (stride 1): shifting the input along the last axis shifts the output, away from the borders."""
    case = ConvCase(**{**case.__dict__, "stride": (1,) * case.dims})
    config = case.config()
    skip_outside(impl, config, form="image", dtype=F64, device=device, spatial_dims=case.dims, shapes=case.shapes())
    t = case.tensors(F64, device)
    w = t["weight"].reshape(case.out_channels, case.in_channels // case.groups, -1)  # type: ignore[union-attr]
    y = impl.convnn(t["x"], w, t["bias"], config)
    ys = impl.convnn(torch.roll(t["x"], shift, dims=-1), w, t["bias"], config)  # type: ignore[arg-type]
    assume(y.shape[-1] > shift)
    tolerance.check(
        "test_translation_equivariance",
        ys[..., shift:],
        y[..., :-shift],
        y[..., :-shift],
        dtype=F64,
        reduction=case.reduction,
        case=(case, shift),
    )


@pytest.mark.parametrize("device", DEVICES)
@given(n=SEQ, d=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_k1_is_gather(impl: Implementation, device: str, n: int, d: int, seed: int) -> None:
    """k = 1 with softmax is a hard argmax gather: each output is exactly the best-scoring token's features."""
    config = cr.ConvNNConfig(k=1, basis="feature", similarity="dot", rho="softmax", kernel="sum")
    skip_outside(impl, config, form="image", dtype=F64, device=device, spatial_dims=1, shapes=_tokens_shapes(d, n))
    x = randn((2, d, n), seed, F64, device)
    tokens = x.transpose(1, 2).cpu()
    s = tokens @ tokens.transpose(1, 2)
    top2 = s.topk(min(2, n), dim=-1).values
    clear = (top2[..., 0] - top2[..., -1] > 1e-9) | (n == 1)
    gathered = torch.stack([tokens[b, s[b].argmax(-1)] for b in range(2)]).transpose(1, 2)
    y = impl.convnn(x, None, None, config).cpu()
    keep = clear[:, None, :]
    tolerance.check_exact(
        "test_k1_is_gather",
        torch.where(keep, y, 0.0),
        torch.where(keep, gathered, 0.0),
        case={"n": n, "d": d, "seed": seed},
        what="output (the best-scoring token's features)",
        kind="mismatch",
    )


@pytest.mark.parametrize("device", DEVICES)
@given(n=SEQ, d=st.integers(1, 4), rho_scale=st.floats(0.25, 4.0), seed=st.integers(0, 2**31 - 1))
@example(n=1, d=1, rho_scale=1.0, seed=0)
def test_dense_limit_k_equals_n(impl: Implementation, device: str, n: int, d: int, rho_scale: float, seed: int) -> None:
    """k = N with cosine scores and softmax is dense attention softmax(rho_scale * cos) @ X."""
    config = cr.ConvNNConfig(
        k=n, basis="feature", similarity="cosine", rho="softmax", rho_scale=rho_scale, kernel="sum"
    )
    skip_outside(impl, config, form="image", dtype=F64, device=device, spatial_dims=1, shapes=_tokens_shapes(d, n))
    x = randn((2, d, n), seed, F64, device)
    f = x.transpose(1, 2).cpu()
    u = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    gold = (torch.softmax(rho_scale * (u @ u.transpose(1, 2)), dim=-1) @ f).transpose(1, 2)
    y = impl.convnn(x, None, None, config)
    tolerance.check(
        "test_dense_limit_k_equals_n",
        y,
        gold,
        gold,
        dtype=F64,
        reduction=2 * n * d,
        case={"n": n, "d": d, "rho_scale": rho_scale, "seed": seed},
    )


@given(case=general_cases(max_tokens=25), dtype=st.sampled_from((torch.float64, torch.float32)))
def test_cpu_determinism(impl: Implementation, case: GeneralCase, dtype: torch.dtype) -> None:
    """On the CPU two calls with the same input and generator seed are bitwise equal, random candidates included."""
    c = case.config
    skip_outside(impl, c, form="image", dtype=dtype, device="cpu", spatial_dims=len(case.spatial), shapes=case.shapes())
    if not impl.capabilities.deterministic:
        pytest.skip(f"{impl.name}: declares deterministic=False")
    t = case.tensors(dtype)
    a = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator())
    b = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator())
    tolerance.check_exact("test_cpu_determinism", a, b, case=case, what="two identical calls", kind="nondeterministic")


@given(case=general_cases(candidates=("random",), max_tokens=25))
def test_random_draw_follows_the_seed(impl: Implementation, case: GeneralCase) -> None:
    """Random candidates are a function of the generator's seed: a fresh generator with that seed replays the output."""
    c = case.config
    skip_outside(impl, c, form="image", dtype=F64, device="cpu", spatial_dims=len(case.spatial), shapes=case.shapes())
    t = case.tensors(F64)
    g = case.generator()
    first = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=g)
    again = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator())
    tolerance.check_exact("test_random_draw_follows_the_seed", first, again, case=case, what="replayed draw", kind="nondeterministic")


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(dims=(2,)))
@example(case=EDGE_CONVS[1])
def test_conv_linearity_in_weight(impl: Implementation, device: str, case: ConvCase) -> None:
    """The exact conv configuration is linear in its weight: conv(x, w1 + w2) = conv(x, w1) + conv(x, w2) - bias."""
    config = case.config()
    skip_outside(impl, config, form="image", dtype=F64, device=device, spatial_dims=case.dims, shapes=case.shapes())
    t = case.tensors(F64, device)
    w1 = t["weight"].reshape(case.out_channels, case.in_channels // case.groups, -1)  # type: ignore[union-attr]
    w2 = randn(tuple(w1.shape), case.seed + 5, F64, device)
    y = impl.convnn(t["x"], w1 + w2, None, config)
    parts = impl.convnn(t["x"], w1, None, config) + impl.convnn(t["x"], w2, None, config)
    # base: the same decomposition by PyTorch's conv, which measures the rounding it costs
    w_shape = tuple(t["weight"].shape)  # type: ignore[union-attr]
    base = torch_conv(case, t["x"], w1.reshape(w_shape), None) + torch_conv(case, t["x"], w2.reshape(w_shape), None)  # type: ignore[arg-type]
    gold = torch_conv(case, t["x"], (w1 + w2).reshape(w_shape), None)  # type: ignore[arg-type]
    tolerance.check("test_conv_linearity_in_weight", parts, base, gold, dtype=F64, reduction=2 * case.reduction, case=case)
    tolerance.check("test_conv_linearity_in_weight", y, gold, gold, dtype=F64, reduction=case.reduction, case=case)


@pytest.mark.parametrize("device", DEVICES)
@given(case=general_cases(max_tokens=25), budget=st.sampled_from((1, 64, 512, 4096)))
def test_output_does_not_depend_on_the_budget(impl: Implementation, device: str, case: GeneralCase, budget: int) -> None:
    """With a memory budget small enough for one query per chunk (or a few), the output is the default budget's."""
    if "memory_budget" not in impl.capabilities.options:
        pytest.skip(f"{impl.name}: takes no memory_budget")
    c = case.config
    skip_outside(impl, c, form="image", dtype=F64, device=device, spatial_dims=len(case.spatial), shapes=case.shapes())
    t = case.tensors(F64, device)
    reject(impl, image_ambiguity(t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3))  # type: ignore[arg-type]
    chunked = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator(), memory_budget=budget)  # type: ignore[call-arg]
    default = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator())
    tolerance.check(
        "test_output_does_not_depend_on_the_budget", chunked, default, default, dtype=F64, reduction=case.reduction,
        case=(case, {"memory_budget": budget}), score_gain=image_score_gain(t["x"], c, generator=case.generator()),  # type: ignore[arg-type]
    )


def _sibling(config: cr.ConvNNConfig, knob: str, d: int) -> cr.ConvNNConfig | None:
    """``config`` with one selection knob changed, the geometry and k kept (``d`` spatial axes);
    None when that knob has no other valid value here."""
    if knob == "kernel_size":  # None and a kernel of ones share a geometry, not a scaling
        if config.kernel_size is None:
            value: object = (1,) * d
        elif all(k == 1 for k in per_axis(config.kernel_size, d, "kernel_size")):
            value = None
        else:
            return None
    elif knob == "grid_rounding":
        if config.candidates != "grid":
            return None
        value = "truncate" if config.grid_rounding == "round" else "round"
    else:
        flip = {"metric": ("chebyshev", "euclidean"), "coordinates": ("integer", "normalized"), "slot_order": ("rank", "offset")}
        a, b = flip[knob]
        value = b if getattr(config, knob) == a else a
    try:
        return config.replace(**{knob: value})
    except ValueError:
        return None


@st.composite
def _leak_cases(draw: st.DrawFn) -> tuple[GeneralCase, str]:
    """A position-basis case and the knob its earlier call changes, drawn where that knob can
    matter: a kernel of ones scales the scores (so rho must read them); the grid conventions
    differ on long axes (1-D)."""
    knob = draw(st.sampled_from(("kernel_size", "grid_rounding", "metric", "coordinates", "slot_order")))
    if knob == "grid_rounding":
        case = draw(general_cases(bases=("position",), candidates=("grid",), dims=(1,)))
    else:
        case = draw(general_cases(bases=("position",), candidates=("all", "grid")))
    if knob == "kernel_size" and case.config.rho == "ones":
        try:
            case = dataclasses.replace(case, config=case.config.replace(rho=draw(st.sampled_from(("softmax", "scores")))))
        except ValueError:
            assume(False)
    return case, knob


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=200)  # small inputs (~25 ms an example); a knob that matters is drawn in about 1 of 20
@given(drawn=_leak_cases())
def test_calls_do_not_leak_into_each_other(impl: Implementation, device: str, drawn: tuple[GeneralCase, str]) -> None:
    """A call after one whose configuration differs in a single selection knob (same shapes, same
    k) still equals the oracle: nothing an implementation keeps between calls (a table cache)
    may be keyed on less than what the selection depends on."""
    case, knob = drawn
    c = case.config
    sibling = _sibling(c, knob, len(case.spatial))
    assume(sibling is not None)
    assert sibling is not None
    skip_outside(impl, c, form="image", dtype=F64, device=device, spatial_dims=len(case.spatial), shapes=case.shapes())
    reject(impl, impl.capabilities.reason(
        sibling, form="image", dtype=F64, device=device, spatial_dims=len(case.spatial), shapes=case.shapes()
    ))
    t = case.tensors(F64, device)
    if not claims_tie_rule(impl):  # position ties are exact: the canonical rule decides them
        reject(impl, image_ambiguity(t["x"], c, generator=case.generator(), scored_dim=case.in_channels + 3))  # type: ignore[arg-type]
    impl.convnn(t["x"], t["weight"], t["bias"], sibling, generator=case.generator())
    cand = impl.convnn(t["x"], t["weight"], t["bias"], c, generator=case.generator())
    cpu = {n: None if v is None else v.cpu() for n, v in t.items()}
    gold = naive_convnn(**cpu, config=c, generator=case.generator())  # type: ignore[arg-type]
    tolerance.check(
        "test_calls_do_not_leak_into_each_other", cand, gold, gold, dtype=F64, reduction=case.reduction,
        case=(case, {"earlier call changed": knob, "to": getattr(sibling, knob)}), device=device,
        score_gain=image_score_gain(t["x"], c, generator=case.generator()),  # type: ignore[arg-type]
    )
