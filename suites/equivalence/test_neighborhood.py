"""Exact neighbourhood attention: ConvNN with the window candidate rule (``candidates='window'``),
scaled-dot scores, softmax and the sum kernel over every candidate is NATTEN's ``na1d/na2d/na3d``.

Three independent readings of the window stand against the reference: the oracle's, the dense
boolean mask SDPA is given (`convnn_ref.testing.window_mask`: the gold, in float64, forward and
gradients), and the real libraries: NATTEN 0.21.7 itself and FlexAttention with this suite's own
``mask_mod`` (`suites.adapters.flex_na`). Cases: 1 to 3 axes, non-square grids barely larger
than the kernel, odd and even kernel sizes per axis, dilation, window stride and causal per
axis, heads, every dtype each library runs.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import naive_window_attention, window_geometry, window_mask
from suites import tolerance
from suites.adapters.flex_na import neighborhood_mask_mod
from suites.equivalence._common import DEVICES, dtypes, expect_named_error, gold_pair, promote, skip_outside, with_grads
from suites.implementations import Implementation, Shapes
from suites.inputs import STYLES, tokens
from suites.strategies import SEEDS, input_scales
from suites.ties import attention_score_gain

HAS_NATTEN = importlib.util.find_spec("natten") is not None
NO_NATTEN = "natten is not installed (make setup installs natten==0.21.7 with --no-build-isolation)"
#: Set by `make test`: where the pinned toolchain is installed, a missing NATTEN is a failure, not a skip.
REQUIRE_NATTEN = os.environ.get("CONVNN_REQUIRE_NATTEN") == "1"
#: Tokens of a case the loop oracle still runs quickly.
MAX_ORACLE_TOKENS = 64


def test_natten_is_installed_where_required() -> None:
    """`make test` sets CONVNN_REQUIRE_NATTEN=1: there the NATTEN properties must run, never
    skip (a broken install would otherwise turn them into silent skips)."""
    if REQUIRE_NATTEN:
        assert HAS_NATTEN, NO_NATTEN
    elif not HAS_NATTEN:
        pytest.skip(NO_NATTEN)


@dataclass(frozen=True)
class WindowCase:
    """A grid ``shape`` with per-axis ``kernel``, ``dilation``, ``stride`` (NATTEN's: queries of
    a stride group share a window) and ``causal``; ``batch`` x ``heads`` token grids of
    ``dim``-wide queries and keys and ``vdim``-wide values."""

    shape: tuple[int, ...]
    kernel: tuple[int, ...]
    dilation: tuple[int, ...]
    stride: tuple[int, ...]
    causal: tuple[bool, ...]
    batch: int
    heads: int
    dim: int
    vdim: int
    scale: float | None
    seed: int
    style: str = "normal"
    magnitude: float = 1.0

    def config(self) -> ConvNNConfig:
        return cr.neighborhood_config(self.kernel, self.dilation, self.stride, self.causal, self.scale)

    @property
    def tokens(self) -> int:
        return math.prod(self.shape)

    @property
    def reduction(self) -> int:
        """Terms behind one output element: a score sums D products, the output up to prod(K) values."""
        return math.prod(self.kernel) * (self.dim + self.vdim)

    @property
    def gradient_reductions(self) -> dict[str, int]:
        """grad q sums a window of score gradients; a key or value is in up to prod(K)*prod(s) windows."""
        window = math.prod(self.kernel)
        reach = window * math.prod(self.stride)
        return {"q": window * (self.dim + self.vdim), "k": reach * (self.dim + self.vdim), "v": reach}

    def shapes(self) -> Shapes:
        return Shapes(form="window", batch=self.batch * self.heads, spatial=self.shape, dim=self.dim, vdim=self.vdim)

    def tensors(self, dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor]:
        """q, k ``(B*H, *S, D)``, v ``(B*H, *S, Dv)``: heads folded into the batch."""
        bh, n = self.batch * self.heads, self.tokens
        kw = {"style": self.style, "scale": self.magnitude}
        q = tokens((bh, n, self.dim), self.seed, dtype, device, **kw)  # type: ignore[arg-type]
        k = tokens((bh, n, self.dim), self.seed + 1, dtype, device, **kw)  # type: ignore[arg-type]
        v = tokens((bh, n, self.vdim), self.seed + 2, dtype, device, **kw)  # type: ignore[arg-type]
        return {"q": q.reshape(bh, *self.shape, self.dim), "k": k.reshape(bh, *self.shape, self.dim), "v": v.reshape(bh, *self.shape, self.vdim)}

    def mask(self) -> torch.Tensor:
        """The dense ``(N, N)`` window: FlexAttention's ``mask_mod`` of `suites.adapters.flex_na`
        (a reading of the rule written apart from the reference's) on every (query, key) pair;
        `convnn_ref.testing.window_mask`, the reference's own, must agree with it."""
        n = self.tokens
        mod = neighborhood_mask_mod(self.shape, self.kernel, self.stride, self.dilation, self.causal)
        zero = torch.zeros((), dtype=torch.int64)
        return mod(zero, zero, torch.arange(n)[:, None], torch.arange(n)[None, :])


@st.composite
def window_cases(draw: st.DrawFn, max_tokens: int = 400, natten_heads: bool = False) -> WindowCase:
    """Grids barely larger than ``kernel * dilation`` on every axis, each axis its own knobs.
    ``natten_heads``: head sizes NATTEN's CPU path runs (D = Dv, a power of two from 8)."""
    d = draw(st.sampled_from((1, 2, 3)))
    shape, kernel, dilation, stride, causal = [], [], [], [], []
    for _ in range(d):
        k = draw(st.integers(2, 5 if d > 1 else 9))
        dl = draw(st.integers(1, 3))
        extra = draw(st.integers(0, 4))
        shape.append(k * dl + extra)
        kernel.append(k)
        dilation.append(dl)
        stride.append(draw(st.integers(1, k)))
        causal.append(draw(st.booleans()))
    while math.prod(shape) > max_tokens:  # trim the slack first, then dilation
        a = max(range(d), key=lambda i: shape[i] - kernel[i] * dilation[i])
        if shape[a] > kernel[a] * dilation[a]:
            shape[a] -= 1
            continue
        a = max(range(d), key=lambda i: dilation[i])
        if dilation[a] == 1:
            break
        dilation[a] -= 1
        shape[a] = kernel[a] * dilation[a]
    if natten_heads:
        dim = vdim = draw(st.sampled_from((8, 16)))
    else:  # any head size, with NATTEN's (D = Dv, powers of two from 8) often enough for its adapter
        dim = draw(st.sampled_from((1, 3, 5, 8, 8, 16)))
        vdim = dim if draw(st.booleans()) else draw(st.integers(1, 8))
    return WindowCase(
        shape=tuple(shape), kernel=tuple(kernel), dilation=tuple(dilation), stride=tuple(stride), causal=tuple(causal),
        batch=draw(st.integers(1, 2)), heads=draw(st.integers(1, 3)), dim=dim, vdim=vdim,
        scale=draw(st.none() | st.sampled_from((0.05, 0.5, 2.0))), seed=draw(SEEDS), style=draw(st.sampled_from(STYLES)),
        magnitude=draw(input_scales),
    )


#: Fixed cases: a 2-D non-square grid with every knob, and a 1-D causal window as long as the sequence.
EDGE_WINDOWS = (
    WindowCase((9, 7), (3, 4), (2, 1), (2, 3), (False, True), 2, 2, 8, 8, None, 3),
    WindowCase((6,), (6,), (1,), (2,), (True,), 1, 1, 8, 8, None, 4),
    WindowCase((4, 5, 6), (2, 3, 2), (2, 1, 3), (1, 3, 2), (True, False, False), 1, 2, 3, 4, 0.5, 5),
)


def _sdpa_window(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float | None) -> torch.Tensor:
    """The dense baseline: SDPA over all N keys with the window as a boolean mask ``(N, N)``."""
    b, n = q.shape[0], mask.shape[0]
    flat = (q.reshape(b, n, q.shape[-1]), k.reshape(b, n, k.shape[-1]), v.reshape(b, n, v.shape[-1]))
    return F.scaled_dot_product_attention(*flat, attn_mask=mask, scale=scale).reshape(*v.shape)


def _sdpa_gold(case: WindowCase, t: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return gold_pair(lambda q, k, v: _sdpa_window(q, k, v, mask, case.scale), t, case.seed)


def _check_against_sdpa(prop: str, cand: torch.Tensor, case: WindowCase, t: dict[str, torch.Tensor], dtype: torch.dtype, device: str) -> None:
    mask = case.mask()
    base = _sdpa_window(t["q"], t["k"], t["v"], mask.to(device), case.scale)
    gold, perturbed = _sdpa_gold(case, t, mask)
    tolerance.check(prop, cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, device=device, perturbed=perturbed)


# ------------------------------------------------------------------------- the implementation


@pytest.mark.parametrize("device", DEVICES)
@given(case=window_cases(), dtype=dtypes)
@example(case=EDGE_WINDOWS[0], dtype=torch.float64)
@example(case=EDGE_WINDOWS[1], dtype=torch.float32)
@example(case=EDGE_WINDOWS[2], dtype=torch.float64)
def test_window_vs_masked_sdpa(impl: Implementation, device: str, case: WindowCase, dtype: torch.dtype) -> None:
    """The window form equals SDPA given the window as a dense boolean mask (gold: float64)."""
    config = case.config()
    skip_outside(impl, config, form="window", dtype=dtype, device=device, shapes=case.shapes())
    t = case.tensors(dtype, device)
    cand = impl.window_attention(t["q"], t["k"], t["v"], config)
    _check_against_sdpa("test_window_vs_masked_sdpa", cand, case, t, dtype, device)


@given(case=window_cases(max_tokens=MAX_ORACLE_TOKENS), dtype=st.sampled_from((torch.float64, torch.float32)))
@example(case=EDGE_WINDOWS[0], dtype=torch.float64)
def test_window_vs_oracle(impl: Implementation, case: WindowCase, dtype: torch.dtype) -> None:
    """The window form equals the loop oracle's own reading of the window rule (gold: the oracle
    in float64; base: the oracle in the test dtype)."""
    config = case.config()
    skip_outside(impl, config, form="window", dtype=dtype, device="cpu", shapes=case.shapes())
    t = case.tensors(dtype)
    cand = impl.window_attention(t["q"], t["k"], t["v"], config)
    base = naive_window_attention(t["q"], t["k"], t["v"], config)
    gold, perturbed = gold_pair(lambda q, k, v: naive_window_attention(q, k, v, config), t, case.seed)
    tolerance.check("test_window_vs_oracle", cand, base, gold, dtype=dtype, reduction=case.reduction, case=case, perturbed=perturbed)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)  # three forward+backward passes per example
@given(case=window_cases(max_tokens=120), dtype=st.sampled_from((torch.float64, torch.float32)))
@example(case=EDGE_WINDOWS[0], dtype=torch.float64)
def test_window_gradients(impl: Implementation, device: str, case: WindowCase, dtype: torch.dtype) -> None:
    """Gradients with respect to q, k and v equal those of SDPA with the dense window mask (the
    error model of attention gradients: perturbed gold and the softmax backward's score gain)."""
    config = case.config()
    skip_outside(impl, config, form="window", dtype=dtype, device=device, shapes=case.shapes(), backward=True)
    t = case.tensors(dtype, device)
    mask = case.mask()

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _sdpa_window(q, k, v, mask.to(q.device), case.scale)

    _, cand = with_grads(lambda q, k, v: impl.window_attention(q, k, v, config), t, case.seed, dtype)
    _, base = with_grads(sdpa, t, case.seed, dtype)
    _, gold = with_grads(sdpa, promote(t), case.seed, dtype)  # type: ignore[arg-type]
    _, perturbed = with_grads(sdpa, tolerance.perturb(t, case.seed), case.seed, dtype)  # type: ignore[arg-type]
    tolerance.check_gradients(
        "test_window_gradients", cand, base, gold, dtype=dtype, reductions=case.gradient_reductions, case=case, device=device,
        perturbed=perturbed, score_gain=attention_score_gain(t["q"], t["k"], t["v"], case.scale),
    )


@given(case=window_cases(max_tokens=300))
def test_window_mask_is_the_rule(case: WindowCase) -> None:
    """The testing API's dense window (the reference's rule) equals the suite's mask_mod on every
    (query, key) pair: what the benchmarks' dense-mask SDPA baseline is given is the window."""
    ours = window_mask(window_geometry(case.config(), case.shape))
    tolerance.check_exact("test_window_mask_is_the_rule", ours, case.mask(), case=case, what="dense window mask", kind="structure")


@given(case=window_cases(max_tokens=150))
def test_window_bad_knobs_named(impl: Implementation, case: WindowCase) -> None:
    """A kernel (times dilation) longer than an axis, or a window stride past the kernel, is
    refused with a ValueError naming the knob."""
    config = case.config()
    skip_outside(impl, config, form="window", dtype=torch.float32, device="cpu", shapes=case.shapes())
    t = case.tensors(torch.float32)
    short = (slice(0, case.kernel[0] * case.dilation[0] - 1),)  # axis 0 one point shorter than the dilated kernel
    cut = {n: x[(slice(None), *short)] for n, x in t.items()}
    expect_named_error(
        impl, "test_window_bad_knobs_named", lambda: impl.window_attention(cut["q"], cut["k"], cut["v"], config),
        ValueError, r"kernel_size|dilation", case=case,
    )
    wide = config.replace(window_stride=tuple(k + 1 if a == 0 else 1 for a, k in enumerate(case.kernel)))
    expect_named_error(
        impl, "test_window_bad_knobs_named", lambda: impl.window_attention(t["q"], t["k"], t["v"], wide),
        ValueError, r"window_stride", case=case,
    )


# ------------------------------------------------------------------ the twins: NATTEN's layout


def _natten_layout(case: WindowCase, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``(B*H, *S, D)`` -> NATTEN's ``(B, *S, H, D)``."""
    return {n: x.reshape(case.batch, case.heads, *x.shape[1:]).movedim(1, -2) for n, x in t.items()}


def _natten(case: WindowCase, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    import natten

    op = (natten.na1d, natten.na2d, natten.na3d)[len(case.shape) - 1]
    return op(q, k, v, kernel_size=case.kernel, stride=case.stride, dilation=case.dilation, is_causal=case.causal, scale=case.scale)


def _natten_runs(case: WindowCase) -> bool:
    """NATTEN 0.21.7 on the CPU hands a 1-D window as long as the sequence to its attention
    operator, whose Flex backend has no causal mask (NotImplementedError)."""
    return not (len(case.shape) == 1 and case.causal[0] and case.kernel[0] == case.shape[0])


@pytest.mark.skipif(not HAS_NATTEN, reason=NO_NATTEN)
@settings(max_examples=30)  # NATTEN builds a Flex block mask per call (~0.1 s)
@given(case=window_cases(max_tokens=200, natten_heads=True), dtype=st.sampled_from((torch.float32, torch.float16, torch.bfloat16)))
@example(case=EDGE_WINDOWS[0], dtype=torch.float32)
@example(case=EDGE_WINDOWS[1], dtype=torch.float32)
def test_neighborhood_attention_is_natten(case: WindowCase, dtype: torch.dtype) -> None:
    """`cr.neighborhood_attention` in NATTEN's layout and NATTEN's ``na1d/na2d/na3d`` on the same
    input both equal the gold (SDPA with the dense window mask in float64), each within the error
    model of SDPA-with-mask in the test dtype; where NATTEN cannot run it raises
    NotImplementedError and the reference still equals the gold."""
    t = case.tensors(dtype)
    n = _natten_layout(case, t)
    cand = cr.neighborhood_attention(n["q"], n["k"], n["v"], case.kernel, case.dilation, case.stride, case.causal, case.scale)
    mask = case.mask()
    base = _natten_layout(case, {"y": _sdpa_window(t["q"], t["k"], t["v"], mask, case.scale)})["y"]
    gold, perturbed = (_natten_layout(case, {"y": y})["y"] for y in _sdpa_gold(case, t, mask))
    check = dict(dtype=dtype, reduction=case.reduction, case=case, perturbed=perturbed)
    tolerance.check("test_neighborhood_attention_is_natten", cand, base, gold, what="reference output", **check)  # type: ignore[arg-type]
    if not _natten_runs(case):
        with pytest.raises(NotImplementedError):
            _natten(case, n["q"], n["k"], n["v"])
        return
    theirs = _natten(case, n["q"], n["k"], n["v"])
    tolerance.check("test_neighborhood_attention_is_natten", theirs, base, gold, what="NATTEN output", **check)  # type: ignore[arg-type]


@pytest.mark.skipif(not HAS_NATTEN, reason=NO_NATTEN)
@settings(max_examples=6)  # two modules per example; the knobs are the other properties' business
@given(seed=SEEDS, dims=st.sampled_from((1, 2, 3)), heads=st.integers(1, 3), qkv_bias=st.booleans())
def test_layer_loads_natten_module(seed: int, dims: int, heads: int, qkv_bias: bool) -> None:
    """`cr.NeighborhoodAttention` with the state dict of NATTEN's ``NeighborhoodAttention{d}D``
    computes the module's function (gold: its qkv, per-head masked SDPA and proj in float64)."""
    import natten

    kernel, dilation, shape = {1: ((5,), (2,), (13,)), 2: ((3, 4), (1, 2), (6, 9)), 3: ((2, 3, 2), (1, 1, 2), (3, 4, 5))}[dims]
    dim = 8 * heads  # NATTEN's CPU path takes head sizes 8, 16, ... only
    torch.manual_seed(seed)
    module_type = (natten.NeighborhoodAttention1D, natten.NeighborhoodAttention2D, natten.NeighborhoodAttention3D)[dims - 1]
    theirs = module_type(dim, heads, kernel_size=kernel, dilation=dilation, qkv_bias=qkv_bias)
    ours = cr.NeighborhoodAttention(dim, heads, kernel, spatial_dims=dims, dilation=dilation, qkv_bias=qkv_bias)
    ours.load_state_dict(theirs.state_dict())
    x = tokens((2, math.prod(shape), dim), seed, torch.float32).reshape(2, *shape, dim)
    case = WindowCase(shape, kernel, dilation, (1,) * dims, (False,) * dims, 2, heads, dim // heads, dim // heads, None, seed)
    mask = case.mask()
    with torch.no_grad():
        cand, base = ours(x), theirs(x)
        w = {n: p.double() for n, p in theirs.state_dict().items()}
        qkv = F.linear(x.double(), w["qkv.weight"], w.get("qkv.bias")).reshape(2, -1, 3, heads, dim // heads)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(2, *shape, dim)
        gold = F.linear(y, w["proj.weight"], w["proj.bias"])
    tolerance.check(
        "test_layer_loads_natten_module", cand, base, gold, dtype=torch.float32, reduction=case.reduction + 2 * dim, case=case
    )


# ------------------------------------------------------------------ FlexAttention's mask_mod


@settings(max_examples=30)  # a block mask and an eager FlexAttention call per example (~0.1 s)
@given(case=window_cases(max_tokens=200), dtype=dtypes)
@example(case=EDGE_WINDOWS[2], dtype=torch.float32)
def test_flex_mask_mod_is_the_window(case: WindowCase, dtype: torch.dtype) -> None:
    """FlexAttention (eager) with this suite's neighbourhood ``mask_mod`` and the reference both
    equal the gold: three readings of the window rule (the reference's, the dense mask's, the
    mask_mod's) agree on every grid and knob."""
    from suites.adapters.flex_na import FlexNA

    t = case.tensors(dtype)
    config = case.config()
    _check_against_sdpa("test_flex_mask_mod_is_the_window", FlexNA().window_attention(t["q"], t["k"], t["v"], config), case, t, dtype, "cpu")
    _check_against_sdpa("test_flex_mask_mod_is_the_window", cr.window_attention(t["q"], t["k"], t["v"], config), case, t, dtype, "cpu")


def test_compiled_flex_is_the_window() -> None:
    """One compiled FlexAttention configuration (what the benchmarks time; compiling costs tens
    of seconds on the CPU, so one): 2-D, non-square, every knob, float32."""
    from suites.adapters.flex_na import FlexNA

    case = EDGE_WINDOWS[0]
    t = case.tensors(torch.float32)
    cand = FlexNA(compiled=True).window_attention(t["q"], t["k"], t["v"], case.config())
    _check_against_sdpa("test_compiled_flex_is_the_window", cand, case, t, torch.float32, "cpu")


# ------------------------------------------------------------------ the configuration


def test_window_config_refuses_other_knobs() -> None:
    """candidates='window' is neighbourhood attention: any other score, rho, kernel, k, stride or
    padding is refused by name, and so are window knobs without the window."""
    base = cr.neighborhood_config(3)
    for change, name in (
        ({"similarity": "cosine"}, "similarity"), ({"rho": "ones"}, "rho"), ({"kernel": "full", "k": 9}, "kernel"),
        ({"k": 4}, "k"), ({"stride": 2}, "stride"), ({"padding": 1}, "padding"), ({"kernel_size": (1, 3)}, "kernel_size"),
        ({"kernel_size": None}, "kernel_size"),
    ):
        with pytest.raises(ValueError, match=name):
            base.replace(**change)
    with pytest.raises(ValueError, match="window_stride"):
        ConvNNConfig(k=None, similarity="scaled_dot", rho="softmax", kernel="sum", window_stride=2)
    with pytest.raises(ValueError, match="causal"):
        ConvNNConfig(k=None, similarity="scaled_dot", rho="softmax", kernel="sum", causal=True)
    with pytest.raises(TypeError, match="causal"):
        cr.neighborhood_config(3, is_causal=(1, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_attention"):
        cr.convnn(torch.randn(1, 2, 5, 5), None, None, base)
    with pytest.raises(ValueError, match="causal"):
        cr.neighborhood_attention(*(torch.randn(1, 6, 6, 1, 2),) * 3, kernel_size=3, is_causal=(True, False, True))


# ------------------------------------------------------------------ the layer's knobs and the budget


@settings(max_examples=15)
@given(case=window_cases(max_tokens=150), qkv_bias=st.booleans())
def test_layer_is_qkv_window_attention_proj(case: WindowCase, qkv_bias: bool) -> None:
    """`cr.NeighborhoodAttention` with every window knob (kernel, dilation, stride, causal, scale,
    heads, 1-3 axes) is its qkv projection, masked SDPA per head over the window and its output
    projection (gold: that composition in float64 from the layer's own parameters; base: the same
    in float32)."""
    d, heads, head_dim = len(case.shape), case.heads, max(case.dim, 1)
    dim = heads * head_dim
    torch.manual_seed(case.seed)
    layer = cr.NeighborhoodAttention(dim, heads, case.kernel, spatial_dims=d, dilation=case.dilation, stride=case.stride,
                                     is_causal=case.causal, qkv_bias=qkv_bias, scale=case.scale)
    x = tokens((case.batch, case.tokens, dim), case.seed, torch.float32).reshape(case.batch, *case.shape, dim)
    mask = case.mask()

    def composed(x_: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        w = {n: p.detach().to(dtype) for n, p in layer.state_dict().items()}
        qkv = F.linear(x_.to(dtype), w["qkv.weight"], w.get("qkv.bias")).reshape(case.batch, -1, 3, heads, head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=case.scale).transpose(1, 2)
        return F.linear(y.reshape(case.batch, *case.shape, dim), w["proj.weight"], w["proj.bias"])

    with torch.no_grad():
        cand, base, gold = layer(x), composed(x, torch.float32), composed(x, torch.float64)
    what = {"case": case, "qkv_bias": qkv_bias}
    tolerance.check("test_layer_is_qkv_window_attention_proj", cand, base, gold, dtype=torch.float32,
                    reduction=case.reduction + 2 * dim, case=what)


@settings(max_examples=15)
@given(case=window_cases(max_tokens=200), budget=st.sampled_from((64, 4096, 1 << 16)))
def test_window_output_does_not_depend_on_the_budget(case: WindowCase, budget: int) -> None:
    """``memory_budget`` only cuts the tiles into chunks: `window_attention` and
    `neighborhood_attention` under a small budget equal the masked-SDPA gold as the default does
    (float64; base: masked SDPA in float64 on the inputs as given)."""
    t = case.tensors(torch.float64)
    cand = cr.window_attention(t["q"], t["k"], t["v"], case.config(), memory_budget=budget)
    _check_against_sdpa("test_window_output_does_not_depend_on_the_budget", cand, case, t, torch.float64, "cpu")
    n = {name: x.reshape(case.batch, case.heads, *x.shape[1:]).movedim(1, -2) for name, x in t.items()}
    theirs = cr.neighborhood_attention(n["q"], n["k"], n["v"], case.kernel, case.dilation, case.stride, case.causal, case.scale,
                                       memory_budget=budget)
    _check_against_sdpa("test_window_output_does_not_depend_on_the_budget", theirs.movedim(-2, 1).reshape(t["v"].shape),
                        case, t, torch.float64, "cpu")
