"""Hypothesis strategies for the equivalence suite (docs/testing-your-implementation.md, "What the strategies draw").

Strategies draw *structure* (shapes, kernel, stride, padding, dilation, groups, heads, k, masks,
knobs) and an integer *seed*; tensors are filled afterwards from a seeded ``torch.Generator``
(`randn`), so a failing case is fully described by its printed case object.

- `conv_cases`: consistent ``nn.ConvNd`` configurations (1-3 spatial axes, groups with depthwise
  and channel multipliers, even and non-square kernels, kernels larger than the input with
  padding, int/tuple/'valid'/'same' padding, stride, dilation, bias).
- `attention_cases`: batch, heads, self or cross lengths, head dims, masks (none, causal, bool,
  key padding), KVT k, scale.
- `general_cases`: every knob of `ConvNNConfig` on inputs small enough for the naive
  oracle (at most `MAX_ORACLE_TOKENS` tokens).

Steering: inside `steering(capabilities)` (the test runner sets it to the implementation under
test's), every choice of a knob is drawn among the values the implementation supports, when
there are any (otherwise among all, and the property filters the example out with the reason).
Outside it, or with capabilities that restrict nothing, the draws are unchanged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from suites.implementations import Shapes
from suites.inputs import SCALES, STYLES, randn, tokens

if TYPE_CHECKING:
    from suites.implementations import Capabilities

T = TypeVar("T")

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
MAX_ORACLE_TOKENS = 36
SEEDS = st.integers(0, 2**31 - 1)
#: Input magnitudes: mostly 1, and every power of ten from 1e-3 to 1e4 (`suites.inputs.SCALES`).
input_scales = st.just(1.0) | st.sampled_from(SCALES)
#: Score-block budgets in bytes: the default, or small enough for one query per chunk.
memory_budgets = st.none() | st.sampled_from((1, 512, 4096))

_steering: ContextVar[Capabilities | None] = ContextVar("steering", default=None)

#: Pin one knob for a whole run: ``CONVNN_PIN=similarity=cosine`` (knobs: basis, similarity,
#: dtype). The conformance runner searches a failing property again once per value of each knob,
#: so that every mode gets its own shrunk counterexample instead of all shrinking to the first.
PIN_ENV = "CONVNN_PIN"
_PIN_FIELDS = {"basis": "bases", "similarity": "similarities", "dtype": "dtypes"}
#: Whether the current test drew a pinned knob at all (recorded by the plugin).
pin_consulted: ContextVar[list[bool] | None] = ContextVar("pin_consulted", default=None)


def _pin(field_name: str) -> str | None:
    """The pinned value of the capability field ``field_name``, if the environment pins it."""
    spec = os.environ.get(PIN_ENV, "")
    knob, _, value = spec.partition("=")
    return value if _PIN_FIELDS.get(knob) == field_name and value else None


def _note_pin() -> None:
    flag = pin_consulted.get()
    if flag is not None:
        flag[:] = [True]


@contextmanager
def steering(capabilities: Capabilities | None) -> Iterator[None]:
    """Draw the strategies of this module within ``capabilities`` while the block runs."""
    token = _steering.set(capabilities)
    try:
        yield
    finally:
        _steering.reset(token)


def _allowed(field_name: str) -> tuple[object, ...] | None:
    caps = _steering.get()
    return None if caps is None else getattr(caps, field_name)


def _choose(draw: st.DrawFn, options: Sequence[T], field_name: str | None = None, *, allowed: object = None) -> T:
    """``sampled_from(options)`` narrowed to the steering capabilities' ``field_name`` (or
    ``allowed``) when that leaves any option."""
    accepted = allowed if field_name is None else _allowed(field_name)
    pool = [o for o in options if accepted is None or o in accepted]  # type: ignore[operator]
    pinned = _pin(field_name) if field_name is not None else None
    if pinned is not None and pinned in [str(o) for o in options]:
        _note_pin()
        pool = [o for o in options if str(o) == pinned]
    return draw(st.sampled_from(pool or list(options)))


def _flag(name: str) -> bool:
    """A boolean capability (stride, padding, dilation, masks); True outside steering."""
    caps = _steering.get()
    return True if caps is None else bool(getattr(caps, name))


@st.composite
def steered_dtypes(draw: st.DrawFn, options: Sequence[torch.dtype] = ()) -> torch.dtype:
    """One of ``options``, among the dtypes the steering capabilities support when any is."""
    names = _allowed("dtypes")
    pool = [d for d in options if names is None or str(d).replace("torch.", "") in names]
    pinned = _pin("dtypes")
    if pinned is not None and pinned in [str(d).replace("torch.", "") for d in options]:
        _note_pin()
        pool = [d for d in options if str(d).replace("torch.", "") == pinned]
    return draw(st.sampled_from(pool or list(options)))


# --------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvCase:
    """One ``nn.ConvNd`` configuration and the seed of its tensors."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: int | tuple[int, ...] | str
    dilation: tuple[int, ...]
    bias: bool
    seed: int
    style: str = "normal"
    magnitude: float = 1.0

    def shapes(self) -> Shapes:
        """The `Shapes` of this case (image form)."""
        return Shapes(form="image", batch=self.batch, channels=self.in_channels, spatial=self.spatial)

    @property
    def dims(self) -> int:
        return len(self.spatial)

    @property
    def reduction(self) -> int:
        """Terms summed per output element: ``C_in/groups * prod(kernel)``."""
        return self.in_channels // self.groups * math.prod(self.kernel)

    def gradient_reductions(self, outputs_per_channel: int) -> dict[str, int]:
        """Terms summed per element of each gradient, for an output with ``outputs_per_channel``
        positions: an input element gathers ``C_out/groups`` channels times the taps that reach
        it; a weight or bias element sums over the batch and every output position."""
        per_sample = self.batch * outputs_per_channel
        return {
            "x": self.out_channels // self.groups * math.prod(self.kernel),
            "weight": per_sample,
            "bias": per_sample,
        }

    def config(self, convention: str = "exact") -> ConvNNConfig:
        return cr.conv_config(
            self.kernel,
            spatial_dims=self.dims,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            convention=convention,  # type: ignore[arg-type]
        )

    def tensors(self, dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor | None]:
        """x ``(B, C_in, *S)``, weight ``(C_out, C_in/groups, *kernel)``, bias ``(C_out,)`` or None."""
        x = tokens(
            (self.batch, self.in_channels, *self.spatial), self.seed, dtype, device,
            style=self.style, scale=self.magnitude, token_axis=2, feature_axis=1,
        )
        w = randn((self.out_channels, self.in_channels // self.groups, *self.kernel), self.seed + 1, dtype, device)
        b = randn((self.out_channels,), self.seed + 2, dtype, device) if self.bias else None
        return {"x": x, "weight": w, "bias": b}

    def module(self, dtype: torch.dtype, padding_mode: str = "zeros") -> torch.nn.Module:
        """The ``nn.ConvNd`` of this case, its parameters set from the seed."""
        conv_cls = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[self.dims - 1]
        conv = conv_cls(
            self.in_channels,
            self.out_channels,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=padding_mode,
            dtype=dtype,
        )
        t = self.tensors(dtype)
        with torch.no_grad():
            conv.weight.copy_(t["weight"])  # type: ignore[arg-type]
            if self.bias:
                conv.bias.copy_(t["bias"])  # type: ignore[arg-type]
        return conv


@st.composite
def conv_cases(
    draw: st.DrawFn,
    dims: tuple[int, ...] = (1, 2, 3),
    depthwise: bool | None = None,
    max_size: int = 9,
    paddings: tuple[str, ...] = ("int", "tuple", "valid", "same"),
    max_kernel: int | None = None,
) -> ConvCase:
    """A valid ``nn.ConvNd`` configuration. ``depthwise=True`` forces ``groups = C_in``.
    Kernels reach 9 per axis in 1-D and 2-D (past 5x5 a Euclidean selection is a disc, not the
    window) and 3 in 3-D; ``max_kernel`` caps them lower for expensive properties."""
    d = _choose(draw, dims, "spatial_dims")
    max_k = min({1: 9, 2: 9, 3: 3}[d], max_kernel or 9)
    max_s = {1: 2 * max_size, 2: max_size + 4, 3: 5}[d]
    kernel = tuple(draw(st.integers(1, max_k)) for _ in range(d))
    kind = _choose(draw, paddings, allowed=None if _flag("padding") else ("valid",))
    stride = tuple(1 if kind == "same" or not _flag("stride") else draw(st.integers(1, 2)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) if _flag("dilation") else 1 for _ in range(d))
    span = [dl * (k - 1) + 1 for k, dl in zip(kernel, dilation)]
    if kind == "valid":
        pads = [0] * d
    elif kind == "same":
        pads = [(s - 1) // 2 for s in span]
    elif kind == "int":
        pads = [draw(st.integers(0, max(kernel) - 1))] * d
    else:
        pads = [draw(st.integers(0, k - 1)) for k in kernel]
    spatial = []
    for axis in range(d):
        lowest = 1 if kind == "same" else max(1, span[axis] - 2 * pads[axis])
        spatial.append(draw(st.integers(lowest, max(lowest, max_s))))
    padding: int | tuple[int, ...] | str = (
        kind if kind in ("valid", "same") else (pads[0] if kind == "int" else tuple(pads))
    )
    if depthwise is None:
        depthwise = draw(st.booleans())
    if depthwise:
        groups = draw(st.integers(1, 4))
        c_in, c_out = groups, groups * draw(st.integers(1, 3))
    else:
        groups = draw(st.integers(1, 3))
        c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return ConvCase(
        batch=draw(st.integers(1, 2)),
        in_channels=c_in,
        out_channels=c_out,
        groups=groups,
        spatial=tuple(spatial),
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        seed=draw(SEEDS),
        style=draw(st.sampled_from(STYLES)),
        magnitude=draw(input_scales),
    )


#: The edges every property pins (1x1 inputs, k = 1, k = N, C = 1, groups = C, 13x7, kernel larger than the input), as ready-made cases (used with ``@example``).
EDGE_CONVS = (
    ConvCase(1, 1, 1, 1, (1, 1), (1, 1), (1, 1), 0, (1, 1), True, 0),  # 1x1 input, k = 1, C = 1
    ConvCase(2, 3, 6, 3, (13, 7), (3, 3), (1, 1), 1, (1, 1), True, 1),  # groups = C, 13x7
    ConvCase(1, 2, 3, 1, (2, 3), (5, 5), (1, 1), 2, (1, 1), False, 2),  # kernel > input, padding
    ConvCase(1, 2, 2, 1, (3, 3), (3, 3), (1, 1), 0, (1, 1), True, 3),  # k = N (one output)
    ConvCase(1, 1, 2, 1, (8,), (4,), (1,), "same", (2,), False, 4),  # even kernel, 'same', dilation
    ConvCase(1, 2, 2, 2, (3, 4, 5), (2, 3, 1), (2, 1, 1), (1, 1, 0), (1, 1, 1), True, 5),  # 3-D, non-square
)


# --------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionCase:
    """Queries ``(B*H, Nq, D)``, keys ``(B*H, Nk, D)``, values ``(B*H, Nk, Dv)``, a mask kind,
    a KVT k and a scale (None = ``1/sqrt(D)``)."""

    batch: int
    heads: int
    nq: int
    nk: int
    dim: int
    vdim: int
    mask: str  # none | causal | bool | key_padding
    topk: int
    scale: float | None
    seed: int
    style: str = "normal"
    magnitude: float = 1.0

    @property
    def self_attention(self) -> bool:
        """Queries and keys are one tensor (half of the equal-length cases)."""
        return self.nq == self.nk and self.seed % 2 == 0

    def shapes(self) -> Shapes:
        """The `Shapes` of this case (heads folded into the batch)."""
        return Shapes(
            form="attention", batch=self.batch * self.heads, nq=self.nq, nk=self.nk, dim=self.dim,
            vdim=self.vdim, self_attention=self.self_attention,
        )

    @property
    def reduction(self) -> int:
        """Terms behind one output element: a score sums D products, the output Nk weighted values."""
        return self.nk * (self.dim + self.vdim)

    @property
    def gradient_reductions(self) -> dict[str, int]:
        """Terms behind one element of each gradient: grad q sums Nk score gradients (each a dot
        over Dv and a softmax correction over Nk), grad k sums those over Nq queries, grad v
        sums Nq weighted output gradients."""
        return {"q": self.nk * (self.vdim + self.dim), "k": self.nq * self.nk * (self.vdim + self.dim), "v": self.nq}

    def tensors(self, dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor]:
        bh = self.batch * self.heads
        kw = {"style": self.style, "scale": self.magnitude}
        q = tokens((bh, self.nq, self.dim), self.seed, dtype, device, **kw)  # type: ignore[arg-type]
        k = (
            q
            if self.self_attention
            else tokens((bh, self.nk, self.dim), self.seed + 1, dtype, device, **kw)  # type: ignore[arg-type]
        )
        v = tokens((bh, self.nk, self.vdim), self.seed + 2, dtype, device, **kw)  # type: ignore[arg-type]
        return {"q": q, "k": k, "v": v}

    def allowed(self, device: str = "cpu") -> torch.Tensor | None:
        """The mask as ``allowed`` ``(B*H | 1, Nq, Nk)`` bool, True = may attend."""
        if self.mask == "none":
            return None
        if self.mask == "causal":
            return torch.ones(self.nq, self.nk, dtype=torch.bool, device=device).tril()[None]
        g = torch.Generator().manual_seed(self.seed + 3)
        if self.mask == "bool":
            return (torch.rand(self.batch * self.heads, self.nq, self.nk, generator=g) < 0.7).to(device)
        keep = torch.rand(self.batch, 1, 1, self.nk, generator=g) < 0.7
        return keep.expand(self.batch, self.heads, self.nq, self.nk).reshape(-1, self.nq, self.nk).to(device)


@st.composite
def attention_cases(
    draw: st.DrawFn, masks: tuple[str, ...] = ("none", "causal", "bool", "key_padding"), max_len: int = 12
) -> AttentionCase:
    """An attention problem; ``nq == nk`` half of the time (self-attention)."""
    nk = draw(st.integers(1, max_len))
    nq = nk if draw(st.booleans()) else draw(st.integers(1, max_len))
    return AttentionCase(
        batch=draw(st.integers(1, 2)),
        heads=draw(st.integers(1, 3)),
        nq=nq,
        nk=nk,
        dim=draw(st.integers(1, 8)),
        vdim=draw(st.integers(1, 8)),
        mask=_choose(draw, masks, allowed=None if _flag("masks") else ("none",)),
        topk=draw(st.integers(1, nk)),
        scale=draw(st.none() | st.floats(0.05, 2.0)),
        seed=draw(SEEDS),
        style=draw(st.sampled_from(STYLES)),
        magnitude=draw(input_scales),
    )


EDGE_ATTENTION = (
    AttentionCase(1, 1, 1, 1, 1, 1, "none", 1, None, 0),  # one token, k = N = 1
    AttentionCase(2, 2, 7, 13, 4, 3, "key_padding", 13, None, 1),  # cross, k = N
    AttentionCase(1, 1, 5, 5, 3, 2, "none", 1, 0.5, 2),  # k = 1
)


# --------------------------------------------------------------------------- general ConvNN


@dataclass(frozen=True)
class GeneralCase:
    """A `ConvNNConfig` with an input of ``spatial`` shape and ``in_channels`` channels."""

    config: ConvNNConfig
    batch: int
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    bias: bool
    seed: int
    style: str = "normal"
    magnitude: float = 1.0
    #: Bytes of score blocks per query chunk for implementations that take ``memory_budget``
    #: (small values force many chunks); None: the implementation's default.
    memory_budget: int | None = None

    @property
    def computed_unit_terms(self) -> bool:
        """Scores mix the inputs with coordinates the implementation computes itself (coordinate
        channels, hybrid coordinates): unit-size terms no input perturbation moves."""
        return self.config.coord_encoding in ("score", "both") or self.config.basis == "hybrid"

    def shapes(self) -> Shapes:
        """The `Shapes` of this case (image form)."""
        return Shapes(form="image", batch=self.batch, channels=self.in_channels, spatial=self.spatial)

    @property
    def aggregated_channels(self) -> int:
        extra = len(self.spatial) if self.config.coord_encoding in ("aggregate", "both") else 0
        return self.in_channels + extra

    @property
    def reduction(self) -> int:
        """Terms behind one output element: k slots of the aggregated channels, and the scored
        channels of the score that rho weighs each slot with."""
        scored = self.in_channels + len(self.spatial) + 1
        return self.config.k * self.aggregated_channels + scored

    def tensors(self, dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor | None]:
        """x ``(B, C, *S)``, weight ``(C_out, C_in'/groups, k)`` or None, bias or None."""
        c = self.config
        x = tokens(
            (self.batch, self.in_channels, *self.spatial), self.seed, dtype, device,
            style=self.style, scale=self.magnitude, token_axis=2, feature_axis=1,
        )
        w = None
        if c.weighted:
            w = randn((self.out_channels, self.aggregated_channels // c.groups, c.k), self.seed + 1, dtype, device)
        b = randn((self.out_channels,), self.seed + 2, dtype, device) if self.bias else None
        return {"x": x, "weight": w, "bias": b}

    def generator(self) -> torch.Generator:
        """The candidate generator of this case (a fresh one per call: same seed, same draw)."""
        return torch.Generator().manual_seed(self.seed + 7)


def _lattice_count(length: int, dilation: int, stride: int, out: int) -> int:
    """Fewest points on any query's dilation lattice of one padded axis of ``length`` points:
    the lattice of output ``o`` is the points ``j`` with ``(j - o*stride) % dilation == 0``."""
    return min(len(range((o * stride) % dilation, length, dilation)) for o in range(out))


def _grid_count(spatial: tuple[int, ...], r: int, margin: int, rounding: str = "round") -> int:
    """Points of a grid candidate set: ``round(linspace)`` or the research code's float32
    ``linspace(...).long()`` per axis, deduplicated (`ConvNNConfig`, candidates)."""
    n = 1
    for s in spatial:
        if rounding == "truncate":
            pts = torch.linspace(margin, s - 1 - margin, r, dtype=torch.float32).long().unique()
        else:
            pts = torch.linspace(margin, s - 1 - margin, r, dtype=torch.float64).round().unique()
        n *= pts.numel()
    return n


@st.composite
def general_cases(
    draw: st.DrawFn,
    bases: tuple[str, ...] = ("position", "feature", "hybrid"),
    dims: tuple[int, ...] = (1, 2),
    candidates: tuple[str, ...] = ("all", "random", "grid"),
    max_tokens: int = MAX_ORACLE_TOKENS,
    self_slots: tuple[str, ...] = ("candidate", "forced"),
) -> GeneralCase:
    """Any valid ConvNN configuration (every knob of `ConvNNConfig`) on at most ``max_tokens`` tokens."""
    d = _choose(draw, dims, "spatial_dims")
    basis = _choose(draw, bases, "bases")
    caps = _steering.get()
    if caps is not None and caps.max_tokens is not None:
        max_tokens = max(1, min(max_tokens, caps.max_tokens))
    side = max(1, int(max_tokens ** (1 / d)))
    spatial = tuple(draw(st.integers(1, side)) for _ in range(d))
    n = math.prod(spatial)
    cand = _choose(draw, candidates, "candidates")
    kw: dict[str, object] = {"basis": basis, "candidates": cand}
    stride = tuple(draw(st.integers(1, 2)) if _flag("stride") else 1 for _ in range(d))
    self_slot = _choose(draw, self_slots, "self_slots")
    if basis == "position" and cand == "all":  # the own token is the nearest anyway: forced is refused there
        self_slot = "candidate"
    if self_slot == "forced":
        stride = (1,) * d
    kw["stride"] = stride
    pads = [(0, 0)] * d
    dilation = (1,) * d
    kernel = (1,) * d
    if basis == "position":
        kw["metric"] = _choose(draw, ("chebyshev", "euclidean"), "metrics")
        coordinates = _choose(draw, ("integer", "normalized"), "coordinates")
        if draw(st.booleans()):
            kernel = tuple(
                draw(st.integers(1, min(3, s)) if self_slot == "candidate" else st.sampled_from((1, 3)))
                for s in spatial
            )
            if self_slot == "forced":
                kernel = tuple(min(k, s if s % 2 else s - 1) for k, s in zip(kernel, spatial))
            kw["kernel_size"] = kernel
            kw["kernel_scaled"] = draw(st.booleans())
        # a scaled window measures in window units whatever the coordinates: refused there
        kw["coordinates"] = coordinates if kw.get("kernel_scaled") is False or "kernel_size" not in kw else "integer"
        if cand == "all" and self_slot == "candidate":
            dilation = tuple(draw(st.integers(1, 2)) if _flag("dilation") else 1 for _ in range(d))
            pad = st.integers(0, 1) if _flag("padding") else st.just(0)
            pads = [(draw(pad), draw(pad)) for _ in range(d)]
            spatial = tuple(max(s, dl * (k - 1) + 1) for s, k, dl in zip(spatial, kernel, dilation))
            n = math.prod(spatial)
            kw["dilation"] = dilation
            kw["padding"] = tuple(pads)
        kw["slot_order"] = _choose(draw, ("rank", "offset"), "slot_orders") if self_slot == "candidate" else "rank"
        kw["coord_encoding"] = _choose(draw, ("none", "aggregate"), "coord_encodings")  # scoring ignores coordinates here
    else:
        kw["similarity"] = _choose(draw, ("cosine", "euclidean", "dot", "scaled_dot"), "similarities")
        scale = draw(st.none() | st.floats(0.1, 2.0))
        kw["scale"] = scale if kw["similarity"] == "scaled_dot" else None  # only scaled_dot reads it
        if basis == "hybrid":
            kw["coordinates"] = _choose(draw, ("integer", "normalized"), "coordinates")
            # lambda = 0 scores coordinates alone, full of geometric ties; they stay exact ties
            # only for integer coordinates under an exact similarity (not cosine), otherwise
            # rounding orders them differently in every implementation (docs/semantics.md, ties).
            exact = kw["coordinates"] == "integer" and kw["similarity"] in ("dot", "scaled_dot", "euclidean")
            # A tiny lambda > 0 is a near-tie below float64 resolution: keep lambda >= 0.05.
            zero = st.just(0.0) if exact else st.nothing()
            kw["hybrid_lambda"] = draw(zero | st.floats(0.05, 1.0))
        kw["coord_encoding"] = _choose(draw, ("none", "score", "aggregate", "both"), "coord_encodings")
        if cand == "all" and _flag("padding") and draw(st.booleans()):
            # the research layers' default: zero-padded grid, padded zeros as candidates
            pad = st.integers(0, 1)
            pads = [(draw(pad), draw(pad)) for _ in range(d)]
            kw["padding"] = tuple(pads)
            n = math.prod(s + lo + hi for s, (lo, hi) in zip(spatial, pads))
    kw["self_slot"] = self_slot
    # candidate count available to every query
    if cand == "random":
        r = draw(st.integers(1, n))
        kw["num_candidates"] = r
        available = r
    elif cand == "grid":
        r = draw(st.integers(1, max(1, min(spatial))))
        margin = draw(st.integers(0, max(0, (min(spatial) - 1) // 2)))
        rounding = draw(st.sampled_from(("round", "truncate")))
        kw["num_candidates"], kw["grid_margin"], kw["grid_rounding"] = r, margin, rounding
        available = _grid_count(spatial, r, margin, rounding)
    elif basis == "position":
        padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads)]
        available = 1
        for axis in range(d):
            span = dilation[axis] * (kernel[axis] - 1) + 1
            out = (padded[axis] - span) // stride[axis] + 1
            available *= _lattice_count(padded[axis], dilation[axis], stride[axis], out)
    else:
        available = n
    k = draw(st.integers(1, max(1, min(available, 9))) | st.just(available))
    kw["k"] = k
    kw["rho"] = _choose(draw, ("ones", "softmax", "scores"), "rhos")
    rho_scale = draw(st.floats(0.25, 4.0))
    kw["rho_scale"] = rho_scale if kw["rho"] == "softmax" else 1.0  # only softmax reads it
    coord_extra = d if kw.get("coord_encoding") in ("aggregate", "both") else 0
    # One channel under cosine makes every score +-1: all ties, which the tie properties cover.
    one_channel_ties = basis == "feature" and kw.get("similarity") == "cosine" and kw.get("coord_encoding") in ("none", "aggregate")
    c_in = draw(st.integers(2 if one_channel_ties else 1, 3))
    c_eff = c_in + coord_extra
    kernel_kind = _choose(draw, ("full", "grouped", "sum"), "kernels")
    groups = 1
    if kernel_kind == "grouped":
        divisors = [g for g in range(1, c_eff + 1) if c_eff % g == 0]
        groups = draw(st.sampled_from(divisors))
        c_out = groups * draw(st.integers(1, 2))
    elif kernel_kind == "full":
        c_out = draw(st.integers(1, 3))
    else:
        c_out = c_eff
    kw["kernel"], kw["groups"] = kernel_kind, groups
    config = ConvNNConfig(**kw)  # type: ignore[arg-type]
    styles = STYLES
    if kw.get("similarity") == "cosine" and (basis == "hybrid" or kw.get("coord_encoding") in ("score", "both")):
        # A zero token whose coordinates are (nearly) zero has an undefined cosine: one rounding
        # of a computed coordinate decides its score. Not drawn.
        styles = tuple(s for s in STYLES if s != "zero_tokens")
    return GeneralCase(
        config, draw(st.integers(1, 2)), c_in, c_out, spatial, draw(st.booleans()), draw(SEEDS),
        style=draw(st.sampled_from(styles)), magnitude=draw(input_scales), memory_budget=draw(memory_budgets),
    )


@st.composite
def attention_problems(draw: st.DrawFn, styles: tuple[str, ...] = STYLES) -> dict:
    """A sequence-form problem over the attention-relevant knobs, masks and forced self included,
    as a dict: config, b, nq, nk, d, dv, mask (none | causal | random), seed, style, magnitude,
    memory_budget."""
    nk = draw(st.integers(1, 10))
    forced = draw(st.booleans())
    nq = nk if forced else draw(st.integers(1, nk))  # forced self: every query is a key
    cand = draw(st.sampled_from(("all", "random")))
    r = draw(st.integers(1, nk)) if cand == "random" else None
    limit = r if cand == "random" else nk
    k = draw(st.integers(1, limit))
    dv = draw(st.integers(1, 4))
    similarity = _choose(draw, ("cosine", "euclidean", "dot", "scaled_dot"), "similarities")
    scale = draw(st.none() | st.floats(0.1, 2.0))
    rho = draw(st.sampled_from(("ones", "softmax", "scores")))
    rho_scale = draw(st.floats(0.25, 4.0))
    config = ConvNNConfig(
        k=k,
        basis="feature",
        similarity=similarity,  # type: ignore[arg-type]
        scale=scale if similarity == "scaled_dot" else None,  # only scaled_dot reads it
        candidates=cand,
        num_candidates=r,
        self_slot="forced" if forced else "candidate",
        rho=rho,  # type: ignore[arg-type]
        rho_scale=rho_scale if rho == "softmax" else 1.0,  # only softmax reads it
        kernel="sum",  # the contract's attention() takes no weight; weighted kernels: image form
    )
    return {
        "config": config,
        "b": draw(st.integers(1, 2)),
        "nq": nq,
        "nk": nk,
        "d": draw(st.integers(1, 4)),
        "dv": dv,
        "mask": draw(st.sampled_from(("none", "causal", "random"))),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "style": draw(st.sampled_from(styles)),
        "magnitude": draw(input_scales),
        "memory_budget": draw(memory_budgets),
    }


TIE_KINDS = ("one_channel_cosine", "scaled_copies", "duplicates_with_coordinates")


@st.composite
def tied_feature_cases(draw: st.DrawFn) -> GeneralCase:
    """Feature-basis cases whose inputs have *exact* ties between candidates with different
    values, made in a way every correct implementation computes bit-identically:
    ``one_channel_cosine`` (C = 1: every cosine score is +-1), ``scaled_copies`` (tokens times a
    power of two: identical cosine directions), ``duplicates_with_coordinates`` (duplicated
    features under any similarity; the aggregated coordinate channels tell them apart)."""
    kind = draw(st.sampled_from(TIE_KINDS))
    d = draw(st.sampled_from((1, 2)))
    spatial = tuple(draw(st.integers(2, 5)) for _ in range(d))
    n = math.prod(spatial)
    c_in = 1 if kind == "one_channel_cosine" else draw(st.integers(1, 3))
    similarity = "cosine" if kind != "duplicates_with_coordinates" else draw(st.sampled_from(("cosine", "euclidean", "dot", "scaled_dot")))
    coord = "aggregate" if kind == "duplicates_with_coordinates" else draw(st.sampled_from(("none", "aggregate")))
    self_slot = draw(st.sampled_from(("candidate", "forced")))
    cand = draw(st.sampled_from(("all", "random")))
    kw: dict[str, object] = {"basis": "feature", "similarity": similarity, "coord_encoding": coord, "self_slot": self_slot}
    available = n
    if cand == "random":
        r = draw(st.integers(2, n))
        kw.update(candidates="random", num_candidates=r)
        available = r
    k = draw(st.integers(1, min(available, 9)))
    c_eff = c_in + (d if coord == "aggregate" else 0)
    kernel = draw(st.sampled_from(("full", "grouped", "sum")))
    groups = draw(st.sampled_from([g for g in range(1, c_eff + 1) if c_eff % g == 0])) if kernel == "grouped" else 1
    c_out = {"full": draw(st.integers(1, 3)), "grouped": groups * draw(st.integers(1, 2)), "sum": c_eff}[kernel]
    kw.update(k=k, rho=draw(st.sampled_from(("ones", "softmax", "scores"))), kernel=kernel, groups=groups)
    style = {"one_channel_cosine": "normal", "scaled_copies": "scaled_copies", "duplicates_with_coordinates": "duplicated_tokens"}[kind]
    return GeneralCase(
        ConvNNConfig(**kw), draw(st.integers(1, 2)), c_in, c_out, spatial, draw(st.booleans()), draw(SEEDS),  # type: ignore[arg-type]
        style=style,
    )


__all__ = [
    "DTYPES",
    "EDGE_ATTENTION",
    "EDGE_CONVS",
    "MAX_ORACLE_TOKENS",
    "AttentionCase",
    "ConvCase",
    "GeneralCase",
    "attention_cases",
    "attention_problems",
    "conv_cases",
    "general_cases",
    "randn",
    "steered_dtypes",
    "steering",
    "tied_feature_cases",
]
