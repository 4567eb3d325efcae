"""Benchmark cases: what one timed row is, and how to build its inputs, its call and its gold.

A `Case` is one point of the sweep: implementation × mode × k × resolution × C × B × dtype ×
device × direction. `build` turns it into a `Workload`: seeded inputs on the device, a
zero-argument ``run`` (forward, or forward+backward), the float64 ``gold`` output on the
promoted inputs, the same-dtype trusted PyTorch ``base`` where one exists, and a per-query mask
of selections that are ambiguous at this dtype (left out of the comparison: with a tie within
rounding at the k-th score, a correct implementation may select another set).

Inputs come from `suites.inputs.randn`, one seed per tensor derived from the case's ``seed``
(`INPUT_SEEDS`: offsets per tensor name), the same for every implementation of one shape; the
row records them (``input_seeds``).

Modes (image input ``(B, C, H, W)`` with ``N = H*W``, or tokens ``(B, N, C)``):
  position            3×3 (or K×K) conv configuration, `cr.conv_config(K, padding=K//2)`, k = K²
  position-depthwise  the same with ``groups = C`` (a depthwise conv)
  feature             cosine over all candidates, rank slots, full kernel
  feature-random      the same over ``r`` random candidates (seeded generator)
  feature-grid        the same over a ``r × r`` grid of candidates
  hybrid              λ = 0.5 features + integer coordinates, cosine
  attention           scaled dot, softmax, sum kernel, k = N: SDPA (`cr.convnn_attention`)
  kvt                 the same with k < N: KVT top-k attention
  neighborhood        neighbourhood attention, window kernel_size², one head (`suites.bench.neighborhood`)
Implementations: a registry name from `suites.implementations` (``reference`` by default) for
ConvNN rows, or one of the baselines in `suites.bench.baselines`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import convnn_ref as cr
from suites.bench import baselines
from suites.implementations import Implementation
from suites.inputs import randn

IMAGE_MODES = ("position", "position-depthwise", "feature", "feature-random", "feature-grid", "hybrid")
TOKEN_MODES = ("attention", "kvt")
#: Neighbourhood attention, one head on a side x side grid (`suites.bench.neighborhood`).
NA_MODES = ("neighborhood",)
MODES = IMAGE_MODES + TOKEN_MODES + NA_MODES
DIRECTIONS = ("forward", "forward+backward")
#: The mode each baseline computes (ConvNN implementations compute every mode).
BASELINE_MODES = {b.name: (b.computes,) for b in baselines.BASELINES.values()}
SELECTING_MODES = ("feature", "feature-random", "feature-grid", "hybrid", "kvt")


@dataclass(frozen=True, order=True)
class Case:
    """One row of the sweep. ``side`` is H = W; ``r`` the candidate count (random) or the
    grid points per axis (grid); ``kernel_size`` the conv kernel (position modes)."""

    implementation: str
    mode: str
    k: int
    side: int
    C: int = 64
    B: int = 8
    dtype: str = "float32"
    device: str = "cpu"
    direction: str = "forward"
    r: int | None = None
    kernel_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {MODES}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r} is not one of {DIRECTIONS}")
        allowed = BASELINE_MODES.get(self.implementation)
        if allowed is not None and self.mode not in allowed:
            raise ValueError(f"baseline {self.implementation!r} computes mode {allowed}, not {self.mode!r}")

    @property
    def N(self) -> int:
        return self.side * self.side

    @property
    def id(self) -> str:
        """A stable, readable identifier (the pytest id and the resume key)."""
        extra = f"-r{self.r}" if self.r is not None else ""
        direction = "fwd" if self.direction == "forward" else "fwdbwd"
        return (
            f"{self.implementation}-{self.mode}{extra}-k{self.k}-{self.side}x{self.side}-C{self.C}-B{self.B}"
            f"-{self.dtype}-{self.device}-{direction}"
        )

    def fields(self) -> dict[str, object]:
        """The row's identifying columns (extra_info)."""
        return {
            "implementation": self.implementation,
            "mode": self.mode,
            "k": self.k,
            "N": self.N,
            "side": self.side,
            "C": self.C,
            "B": self.B,
            "dtype": self.dtype,
            "device": self.device,
            "direction": self.direction,
            "r": self.r,
            "kernel_size": self.kernel_size,
            "seed": self.seed,
        }


@dataclass
class Workload:
    """A built case. ``run()`` does the timed work; ``output()`` the forward alone (for the
    verdict); ``gold`` float64 and ``base`` (same-dtype PyTorch op, or None) are outputs of the
    same shape; ``ambiguous`` is a bool mask over queries ``(B, N)`` excluded from the
    comparison (None: none); ``reduction`` the length of the longest sum behind one output."""

    run: Callable[[], object]
    output: Callable[[], torch.Tensor]
    gold: Callable[[], torch.Tensor]
    base: Callable[[], torch.Tensor] | None
    ambiguous: Callable[[], torch.Tensor | None]
    reduction: int
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    backend: str = ""
    seeds: dict[str, int] = field(default_factory=dict)


def dtype_of(name: str) -> torch.dtype:
    return getattr(torch, name)


def config_of(case: Case) -> cr.ConvNNConfig:
    """The ConvNN configuration of a case's mode."""
    if case.mode in ("position", "position-depthwise"):
        ks = case.kernel_size or round(math.sqrt(case.k))
        groups = case.C if case.mode == "position-depthwise" else 1
        return cr.conv_config(ks, spatial_dims=2, padding=ks // 2, groups=groups)
    if case.mode == "feature":
        return cr.ConvNNConfig(k=case.k, basis="feature", similarity="cosine")
    if case.mode == "feature-random":
        return cr.ConvNNConfig(k=case.k, basis="feature", similarity="cosine", candidates="random", num_candidates=case.r)
    if case.mode == "feature-grid":
        return cr.ConvNNConfig(k=case.k, basis="feature", similarity="cosine", candidates="grid", num_candidates=case.r)
    if case.mode == "hybrid":
        return cr.ConvNNConfig(k=case.k, basis="hybrid", similarity="cosine", hybrid_lambda=0.5)
    return cr.ConvNNConfig(k=case.k, basis="feature", similarity="scaled_dot", rho="softmax", kernel="sum")


def _generator(case: Case) -> torch.Generator:
    """The generator of random candidate sets (not of inputs)."""
    return torch.Generator().manual_seed(case.seed)


#: Seed offset of each input tensor from the case's seed.
INPUT_SEEDS = {"x": 0, "weight": 1, "bias": 2, "q": 0, "k": 1, "v": 2, "grad_out": 3}


def _input(name: str, shape: tuple[int, ...], case: Case, seeds: dict[str, int], scale: float = 1.0) -> torch.Tensor:
    """Input ``name`` of ``case``: `suites.inputs.randn` with the seed ``case.seed +
    INPUT_SEEDS[name]`` (recorded in ``seeds``) times ``scale``, in the case's dtype and device."""
    seeds[name] = case.seed + INPUT_SEEDS[name]
    t = randn(shape, seeds[name], torch.float64)
    return (t * scale if scale != 1.0 else t).to(dtype=dtype_of(case.dtype), device=case.device)


def build(case: Case, impl: Implementation | None) -> Workload:
    """The workload of ``case``; ``impl`` is the registry implementation for ConvNN rows, None
    for baselines."""
    if case.mode in NA_MODES:
        from suites.bench import neighborhood

        return neighborhood.build(case, impl)
    if case.mode in TOKEN_MODES:
        return _build_tokens(case, impl)
    return _build_image(case, impl)


def _build_image(case: Case, impl: Implementation | None) -> Workload:
    config = config_of(case)
    groups = config.groups
    ks = case.kernel_size or round(math.sqrt(case.k))
    c_in_g = case.C // groups
    seeds: dict[str, int] = {}
    x = _input("x", (case.B, case.C, case.side, case.side), case, seeds)
    weight = _input("weight", (case.C, c_in_g, case.k), case, seeds, scale=1.0 / math.sqrt(c_in_g * case.k))
    bias = _input("bias", (case.C,), case, seeds, scale=0.1)
    grad_out = _input("grad_out", (case.B, case.C, case.side, case.side), case, seeds)
    backward = case.direction == "forward+backward"
    inputs = {"x": x, "weight": weight, "bias": bias}
    if backward:
        for t in inputs.values():
            t.requires_grad_(True)

    def call(x_: torch.Tensor, w_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        name = case.implementation
        if name == "conv2d" or name == "conv2d-depthwise":
            return F.conv2d(x_, w_.reshape(w_.shape[0], w_.shape[1], ks, ks), b_, padding=ks // 2, groups=groups)
        if name == "dense-naive":
            return baselines.dense_naive_convnn(x_, w_, b_, case.k)
        if impl is None:
            raise ValueError(f"no implementation named {name!r} among the baselines, and no registry implementation given")
        gen_ = _generator(case) if config.candidates == "random" else None
        return impl.convnn(x_, w_, b_, config, generator=gen_)

    def promoted() -> tuple[torch.Tensor, ...]:
        return tuple(t.detach().to(torch.float64) for t in (x, weight, bias))

    def gold() -> torch.Tensor:
        x64, w64, b64 = promoted()
        if case.mode.startswith("position"):
            return F.conv2d(x64, w64.reshape(w64.shape[0], w64.shape[1], ks, ks), b64, padding=ks // 2, groups=groups)
        gen_ = _generator(case) if config.candidates == "random" else None
        return cr.convnn(x64, w64, b64, config, generator=gen_)

    base: Callable[[], torch.Tensor] | None = None
    if case.mode.startswith("position"):

        def base() -> torch.Tensor:
            with torch.no_grad():
                return F.conv2d(x, weight.reshape(case.C, c_in_g, ks, ks), bias, padding=ks // 2, groups=groups)

    def ambiguous() -> torch.Tensor | None:
        if case.mode not in SELECTING_MODES:
            return None
        x64 = x.detach().to(torch.float64)
        gen_ = _generator(case) if config.candidates == "random" else None
        nb = cr.neighbours(x64, config.replace(k=case.k + 1), generator=gen_)
        return _ambiguous_queries(nb.score, case, rank_matters=True)

    run, output = _runners(lambda: call(x, weight, bias), grad_out, list(inputs.values()), backward)
    return Workload(run, output, gold, base, ambiguous, reduction=c_in_g * case.k, inputs=inputs, seeds=seeds)


def _build_tokens(case: Case, impl: Implementation | None) -> Workload:
    config = config_of(case)
    seeds: dict[str, int] = {}
    q, k, v = (_input(name, (case.B, case.N, case.C), case, seeds) for name in ("q", "k", "v"))
    grad_out = _input("grad_out", (case.B, case.N, case.C), case, seeds)
    backward = case.direction == "forward+backward"
    inputs = {"q": q, "k": k, "v": v}
    if backward:
        for t in inputs.values():
            t.requires_grad_(True)
    dense = case.k >= case.N
    backend = ""
    name = case.implementation

    def call(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor) -> torch.Tensor:
        if name == "sdpa":
            return baselines.sdpa(q_, k_, v_)
        if name == "sdpa-math":
            return baselines.sdpa_math(q_, k_, v_)
        if name == "kvt-dense":
            return cr.kvt_attention(q_, k_, v_, case.k)
        if impl is None:
            raise ValueError(f"no implementation named {name!r} among the baselines, and no registry implementation given")
        return impl.attention(q_, k_, v_, config)

    if name == "sdpa":
        backend = baselines.sdpa_backend_name(q, k, v)
    elif name == "sdpa-math":
        backend = "math"

    def gold() -> torch.Tensor:
        q64, k64, v64 = (t.detach().to(torch.float64) for t in (q, k, v))
        if dense:
            return baselines.sdpa_math(q64, k64, v64)
        return cr.kvt_attention(q64, k64, v64, case.k)

    def base() -> torch.Tensor:
        with torch.no_grad():
            if dense:
                return baselines.sdpa(q, k, v)
            return cr.kvt_attention(q, k, v, case.k)

    def ambiguous() -> torch.Tensor | None:
        if dense:
            return None
        q64, k64 = q.detach().to(torch.float64), k.detach().to(torch.float64)
        nb = cr.attention_neighbours(q64, k64, config.replace(k=case.k + 1))
        return _ambiguous_queries(nb.score, case, rank_matters=False)

    run, output = _runners(lambda: call(q, k, v), grad_out, list(inputs.values()), backward)
    return Workload(
        run, output, gold, base, ambiguous, reduction=case.N if dense else case.k, inputs=inputs, backend=backend, seeds=seeds
    )


def _runners(
    forward: Callable[[], torch.Tensor], grad_out: torch.Tensor, leaves: list[torch.Tensor], backward: bool
) -> tuple[Callable[[], object], Callable[[], torch.Tensor]]:
    """``run``: the timed call (forward under no_grad, or forward then backward with a fixed
    output gradient, grads of the leaves cleared first); ``output``: the forward alone."""

    def run_forward() -> torch.Tensor:
        with torch.no_grad():
            return forward()

    def run_backward() -> object:
        for t in leaves:
            t.grad = None
        y = forward()
        y.backward(grad_out)
        return y

    return (run_backward if backward else run_forward), run_forward


def _ambiguous_queries(score: torch.Tensor, case: Case, *, rank_matters: bool) -> torch.Tensor:
    """Queries whose selection (or, for rank-ordered weighted slots, whose slot order) could
    change within the case dtype's rounding: float64 scores ``(B, N, k+1)`` sorted descending;
    a gap between neighbours in that list below a tolerance of ``8·sqrt(D)·eps·max|s|`` marks
    the query ambiguous. Returns bool ``(B, N)``."""
    if score.dim() == 2:
        score = score[None]
    eps = torch.finfo(dtype_of(case.dtype)).eps
    tol = 8.0 * math.sqrt(case.C) * eps * float(score.abs().amax().clamp_min(1e-30))
    gaps = score[..., :-1] - score[..., 1:]
    if not rank_matters:
        gaps = gaps[..., -1:]
    return (gaps.abs() < tol).any(dim=-1)


def unsupported(case: Case, impl: Implementation | None) -> str | None:
    """Why a registry implementation declines ``case`` (its `Capabilities`), or None."""
    if case.mode in NA_MODES:
        from suites.bench import neighborhood

        if impl is None:
            return neighborhood.missing(case)
        return impl.capabilities.reason(
            neighborhood.config_of(case), form="window", dtype=dtype_of(case.dtype), device=case.device,
            num_tokens=case.N, backward=case.direction == "forward+backward",
        )
    if impl is None:
        return None
    form = "attention" if case.mode in TOKEN_MODES else "image"
    return impl.capabilities.reason(
        config_of(case), form=form, dtype=dtype_of(case.dtype), device=case.device, spatial_dims=2,
        num_tokens=case.N, backward=case.direction == "forward+backward",
    )
