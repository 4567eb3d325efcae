"""Every knob of a ConvNN layer (SPEC §2) in one validated, immutable dataclass.

`ConvNNConfig` is the contract between the reference path (`functional.py`), the naive
oracle (`naive.py`), the layers and the suites. Its docstring is the semantics; the code
elsewhere implements it. Validation that needs no tensor happens here, in `__post_init__`;
validation that needs the input (k against the candidate count, channels against groups)
happens in `convnn_ref.validation` when the input arrives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

Basis = Literal["position", "feature", "hybrid"]
PositionMetric = Literal["chebyshev", "euclidean"]
Coordinates = Literal["integer", "normalized"]
Similarity = Literal["cosine", "euclidean", "dot", "scaled_dot"]
CandidateKind = Literal["all", "random", "grid"]
SelfSlot = Literal["candidate", "forced"]
SlotOrder = Literal["rank", "offset"]
Rho = Literal["ones", "softmax", "scores"]
Kernel = Literal["full", "grouped", "sum"]
CoordEncoding = Literal["none", "score", "aggregate", "both"]
Border = Literal["zeros", "in_bounds"]

IntOrTuple = int | tuple[int, ...]
Padding = int | tuple[int, ...] | tuple[tuple[int, int], ...]

_CHOICES: dict[str, object] = {
    "basis": Basis,
    "metric": PositionMetric,
    "coordinates": Coordinates,
    "similarity": Similarity,
    "candidates": CandidateKind,
    "self_slot": SelfSlot,
    "slot_order": SlotOrder,
    "rho": Rho,
    "kernel": Kernel,
    "coord_encoding": CoordEncoding,
    "border": Border,
}


@dataclass(frozen=True)
class ConvNNConfig:
    """What one ConvNN layer computes, for input ``x`` of shape ``(B, C, *S)``, ``d = len(S)``.

    Tokens and positions
        The ``N = prod(S)`` tokens are taken in row-major (C-contiguous) order. Token ``i`` has
        features ``f_i`` (C values) and integer position ``p_i`` (its index on each axis).

    Geometry (``kernel_size``, ``stride``, ``padding``, ``dilation``; ints broadcast to every axis)
        ``padding`` (position basis only) extends each axis by ``lo``/``hi`` points whose
        features are zero (``border="zeros"``); with ``border="in_bounds"`` padding must be 0
        and only real tokens are candidates. ``padding`` may be an int, one int per axis, or
        one ``(lo, hi)`` pair per axis (what ``padding='same'`` needs for even kernels).

        Position basis: output index ``o`` on an axis of padded length ``L`` exists for
        ``o = 0 .. (L - dilation*(K-1) - 1) // stride``; its query sits at the window's centre
        ``c = o*stride - lo + dilation*(K-1)/2`` (a half-integer for even K), with
        ``K = kernel_size`` (1 when ``kernel_size`` is None). Candidates are restricted to the
        query's dilation lattice: points ``j`` with ``(j - (o*stride - lo)) % dilation == 0``.
        Feature and hybrid bases: padding 0 and dilation 1; the queries are the tokens at
        positions ``o*stride``, ``o = 0 .. (L-1)//stride``.

    Step 1, score ``s_ij`` (larger is closer)
        position: ``-dist(u_i, u_j)`` with ``dist`` = ``metric`` (chebyshev: max over axes of
            ``|du|``; euclidean: ``sqrt(sum du^2)``) and ``u`` the coordinates: ``integer``
            positions, or ``normalized`` ones (each axis of the padded grid mapped affinely onto
            ``linspace(-1, 1)``, the research code's convention; an axis of length 1 maps to 0).
            With ``kernel_size`` set and ``kernel_scaled=True`` each axis difference is divided
            by ``dilation*K/2`` first (in the coordinate units), so the window is exactly the
            set at scaled distance below 1 for every shape (SPEC §3.1, non-square kernels).
        feature: on features ``f`` (plus coordinate channels if ``coord_encoding`` is
            ``score``/``both``): cosine ``f_i.f_j / (|f_i||f_j|)`` (norms clamped at 1e-12),
            euclidean ``-|f_i - f_j|^2``, dot ``f_i.f_j``, scaled_dot ``f_i.f_j * scale`` with
            ``scale`` defaulting to ``1/sqrt(D)``.
        hybrid: ``z = concat(lambda * f / std(f), (1 - lambda) * u)`` with ``std`` over all
            channels and tokens of one sample (clamped at 1e-12), ``u`` the coordinates; the
            feature ``similarity`` is taken on ``z``.

    Candidates ``Cand(i)``
        ``all``: every token (position basis: every point of the query's dilation lattice in
            the padded grid). ``random``: ``num_candidates`` tokens, drawn once per call and
            shared by every query and every sample of the batch:
            ``torch.randperm(N, generator=generator)[:num_candidates]`` on the CPU, then sorted
            ascending; a generator is required. ``grid``: ``num_candidates`` points per axis at
            ``round(linspace(margin, L - 1 - margin, num_candidates))``, deduplicated, shared
            by every query. A boolean mask (attention: causal, key padding) may remove more.

    Step 2, select ``N_k(i)``
        The ``k`` candidates of largest score. Tie rule: among equal scores the candidate with
        the lower index (position in the candidate list) ranks first. ``self_slot="forced"``
        puts the query's own token in slot 0 whatever its score (stride 1, no padding, same
        token set) and fills slots 1..k-1 with the best other candidates. Slots are ordered by
        ``rank`` (descending score, tie rule) or by ``offset`` (position basis: the candidate's
        position minus the query's, lexicographic; this maps slot t to conv tap t). A query
        with fewer than ``k`` allowed candidates (masks) leaves its last slots empty: they
        weigh zero. k larger than the candidate set itself is an error.

    Step 3, aggregate ``y_i = b + sum_t A_t (rho_t v_{n_t(i)})``
        ``rho``: ``ones``; ``softmax`` of ``rho_scale * s`` over the query's non-empty slots;
        ``scores``: the raw selected scores. A query with no non-empty slot gets ``y_i = b``.
        ``kernel``: ``full``, weight ``(C_out, C_in, k)``, ``A_t = weight[:, :, t]``;
        ``grouped``, weight ``(C_out, C_in/groups, k)`` as in ``nn.Conv1d(groups=...)``
        (``groups = C_in`` is depthwise; ``C_out/C_in`` its channel multiplier); ``sum``, no
        weight, ``A_t = I`` (attention). ``C_in`` counts the ``d`` coordinate channels when
        ``coord_encoding`` is ``aggregate``/``both``. The weight layout is exactly
        ``nn.Conv1d(C_in, C_out, kernel_size=k, stride=k, groups=groups).weight``: gathering
        the neighbours into a length ``N*k`` sequence and applying that Conv1d is the same
        function (`convnn_ref.aggregate.aggregate_as_conv1d`).
    """

    k: int | None
    basis: Basis = "feature"
    metric: PositionMetric = "chebyshev"
    coordinates: Coordinates = "integer"
    kernel_size: IntOrTuple | None = None
    kernel_scaled: bool = True
    similarity: Similarity = "cosine"
    scale: float | None = None
    hybrid_lambda: float = 0.5
    candidates: CandidateKind = "all"
    num_candidates: int | None = None
    grid_margin: int = 0
    self_slot: SelfSlot = "candidate"
    slot_order: SlotOrder = "rank"
    rho: Rho = "ones"
    rho_scale: float = 1.0
    kernel: Kernel = "full"
    groups: int = 1
    coord_encoding: CoordEncoding = "none"
    stride: IntOrTuple = 1
    padding: Padding = 0
    dilation: IntOrTuple = 1
    border: Border = "zeros"

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            allowed = get_args(choices)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        if self.k is None:
            if self.kernel != "sum" or self.basis == "position" or self.self_slot != "candidate":
                raise ValueError(
                    "k=None (every candidate) needs kernel='sum', basis 'feature' or 'hybrid' and "
                    f"self_slot='candidate', got kernel={self.kernel!r}, basis={self.basis!r}, self_slot={self.self_slot!r}"
                )
        else:
            if isinstance(self.k, bool) or not isinstance(self.k, int):
                raise TypeError(f"k must be an int, got {type(self.k).__name__}")
            if self.k < 1:
                raise ValueError(f"k must be >= 1, got k={self.k}")
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"groups must be an int >= 1, got groups={self.groups!r}")
        if self.kernel == "full" and self.groups != 1:
            raise ValueError(f"kernel='full' needs groups=1, got groups={self.groups}; use kernel='grouped'")
        if self.kernel == "sum" and self.groups != 1:
            raise ValueError(f"kernel='sum' has no weight and takes no groups, got groups={self.groups}")
        if not 0.0 <= float(self.hybrid_lambda) <= 1.0:
            raise ValueError(f"hybrid_lambda must lie in [0, 1], got {self.hybrid_lambda}")
        if self.scale is not None and not float(self.scale) > 0.0:
            raise ValueError(f"scale must be > 0 or None, got {self.scale}")
        if self.candidates in ("random", "grid"):
            r = self.num_candidates
            if r is None or isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ValueError(
                    f"candidates={self.candidates!r} needs num_candidates >= 1, got {r!r}"
                )
        elif self.num_candidates is not None:
            raise ValueError(f"num_candidates is only used with candidates='random' or 'grid', got candidates={self.candidates!r}")
        if self.grid_margin < 0:
            raise ValueError(f"grid_margin must be >= 0, got {self.grid_margin}")
        for name in ("stride", "dilation"):
            for v in _as_tuple(getattr(self, name), name):
                if v < 1:
                    raise ValueError(f"{name} must be >= 1 on every axis, got {name}={getattr(self, name)!r}")
        if self.kernel_size is not None:
            for v in _as_tuple(self.kernel_size, "kernel_size"):
                if v < 1:
                    raise ValueError(f"kernel_size must be >= 1 on every axis, got {self.kernel_size!r}")
        for lo, hi in _padding_pairs(self.padding):
            if lo < 0 or hi < 0:
                raise ValueError(f"padding must be >= 0, got padding={self.padding!r}")
        has_padding = any(lo or hi for lo, hi in _padding_pairs(self.padding))
        if self.basis != "position":
            if has_padding:
                raise ValueError(f"padding is only defined for basis='position', got basis={self.basis!r}, padding={self.padding!r}")
            if any(v != 1 for v in _as_tuple(self.dilation, "dilation")):
                raise ValueError(f"dilation is only defined for basis='position', got dilation={self.dilation!r}")
            if self.slot_order == "offset":
                raise ValueError("slot_order='offset' needs basis='position' (offsets of feature neighbours are not a fixed tap layout)")
        if has_padding and self.candidates != "all":
            raise ValueError(f"candidates={self.candidates!r} draws from the real tokens and admits no padding, got padding={self.padding!r}")
        if has_padding and self.border == "in_bounds":
            raise ValueError(f"border='in_bounds' admits no padding, got padding={self.padding!r}")
        if self.self_slot == "forced":
            if self.slot_order != "rank":
                raise ValueError("self_slot='forced' needs slot_order='rank'")
            if has_padding or any(v != 1 for v in _as_tuple(self.stride, "stride")):
                raise ValueError("self_slot='forced' needs stride 1 and no padding (every query must be a token)")

    def replace(self, **changes: object) -> ConvNNConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def weighted(self) -> bool:
        """True when the layer has a weight of shape ``(C_out, C_in/groups, k)``."""
        return self.kernel != "sum"


def _as_tuple(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")


def _padding_pairs(padding: object) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, bool):
        raise TypeError(f"padding must be an int, a tuple of ints or a tuple of (lo, hi) pairs, got {padding!r}")
    if isinstance(padding, int):
        return ((padding, padding),)
    if isinstance(padding, tuple):
        out = []
        for p in padding:
            if isinstance(p, int) and not isinstance(p, bool):
                out.append((p, p))
            elif isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p):
                out.append((p[0], p[1]))
            else:
                raise TypeError(f"padding must be an int, a tuple of ints or a tuple of (lo, hi) pairs, got {padding!r}")
        return tuple(out)
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r}: string paddings are resolved by from_conv; ConvNNConfig takes ints")
    raise TypeError(f"padding must be an int, a tuple of ints or a tuple of (lo, hi) pairs, got {padding!r}")


def per_axis(value: IntOrTuple | None, d: int, name: str, default: int = 1) -> tuple[int, ...]:
    """Broadcast an int (or None → default) to ``d`` axes; check a tuple's length is ``d``."""
    if value is None:
        return (default,) * d
    t = _as_tuple(value, name)
    if len(t) == 1:
        return t * d
    if len(t) != d:
        raise ValueError(f"{name}={value!r} has {len(t)} entries but the input has {d} spatial axes")
    return t


def padding_per_axis(padding: Padding, d: int) -> tuple[tuple[int, int], ...]:
    """``(lo, hi)`` for each of ``d`` axes."""
    pairs = _padding_pairs(padding)
    if len(pairs) == 1:
        return pairs * d
    if len(pairs) != d:
        raise ValueError(f"padding={padding!r} has {len(pairs)} entries but the input has {d} spatial axes")
    return pairs
