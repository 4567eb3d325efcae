"""Every knob of a ConvNN layer in one validated, immutable dataclass.

`ConvNNConfig` is the contract between the reference path (`functional.py`), the naive
oracle (`naive.py`), the layers and the suites. Its docstring is the semantics; the code
elsewhere implements it. Validation that needs no tensor happens here, in `__post_init__`;
validation that needs the input (k against the candidate count, channels against groups)
happens in `convnn_ref.validation` when the input arrives.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
import warnings
from dataclasses import dataclass
from typing import Literal, get_args

Basis = Literal["position", "feature", "hybrid"]
PositionMetric = Literal["chebyshev", "euclidean"]
Coordinates = Literal["integer", "normalized"]
Similarity = Literal["cosine", "euclidean", "dot", "scaled_dot"]
CandidateKind = Literal["all", "random", "grid", "window"]
SelfSlot = Literal["candidate", "forced"]
SlotOrder = Literal["rank", "offset"]
Rho = Literal["ones", "softmax", "scores"]
Kernel = Literal["full", "grouped", "sum"]
CoordEncoding = Literal["none", "score", "aggregate", "both"]
Border = Literal["zeros", "in_bounds"]
GridRounding = Literal["round", "truncate"]

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
    "grid_rounding": GridRounding,
}


@dataclass(frozen=True)
class ConvNNConfig:
    """What one ConvNN layer computes, for input ``x`` of shape ``(B, C, *S)``, ``d = len(S)``.

    Tokens and positions
        The ``N = prod(S)`` tokens are taken in row-major (C-contiguous) order. Token ``i`` has
        features ``f_i`` (C values) and integer position ``p_i`` (its index on each axis).

    Geometry (``kernel_size``, ``stride``, ``padding``, ``dilation``; ints broadcast to every axis)
        ``padding`` extends each axis by ``lo``/``hi`` points whose features are zero
        (``border="zeros"``): the *padded grid*, whose points are the candidate tokens, in
        row-major order (an index into the token list is an index into the padded grid). With
        ``border="in_bounds"`` padding must be 0 and only real tokens are candidates.
        ``padding`` may be an int, one int per axis, or one ``(lo, hi)`` pair per axis (what
        ``padding='same'`` needs for even kernels).

        Position basis: output index ``o`` on an axis of padded length ``L`` exists for
        ``o = 0 .. (L - dilation*(K-1) - 1) // stride``; its query sits at the window's centre
        ``c = o*stride - lo + dilation*(K-1)/2`` (a half-integer for even K), with
        ``K = kernel_size`` (1 when ``kernel_size`` is None). Candidates are restricted to the
        query's dilation lattice: points ``j`` with ``(j - (o*stride - lo)) % dilation == 0``.

        Feature and hybrid bases (dilation 1): the queries are the *real* tokens at positions
        ``o*stride``, ``o = 0 .. (S_a - 1)//stride`` on an axis of real length ``S_a``; the
        output has that query grid's shape whatever the padding. With padding the candidates
        are every point of the padded grid: a padded point is a candidate token with zero
        features (its cosine with any token is 0: norms are clamped), and the hybrid basis
        takes its ``std`` and its coordinates over the padded grid (below).

    Step 1, score ``s_ij`` (larger is closer)
        position: ``-dist(u_i, u_j)`` with ``dist`` = ``metric`` (chebyshev: max over axes of
            ``|du|``; euclidean: ``sqrt(sum du^2)``) and ``u`` the coordinates: ``integer``
            (the point's index on each axis of the padded grid; only differences matter here),
            or ``normalized`` (each axis of the padded grid mapped affinely onto
            ``linspace(-1, 1)``, the research code's convention; an axis of length 1 maps to 0).
            With ``kernel_size`` set and ``kernel_scaled=True`` each axis difference is divided
            by ``dilation*K/2`` first (in the coordinate units), so the window is exactly the
            set at scaled distance below 1 for every shape (non-square and even kernels).
        feature: on features ``f`` (plus coordinate channels if ``coord_encoding`` is
            ``score``/``both``): cosine ``f_i.f_j / (|f_i||f_j|)`` (norms clamped at 1e-12),
            euclidean ``-|f_i - f_j|^2``, dot ``f_i.f_j``, scaled_dot ``f_i.f_j * scale`` with
            ``scale`` defaulting to ``1/sqrt(D)``.
        hybrid: ``z = concat(lambda * f / std(f), (1 - lambda) * u)`` with ``std``
            (Bessel-corrected) over all scored channels and all points of the padded grid of
            one sample (clamped at 1e-12), ``u`` the coordinates of every point of the padded
            grid (``integer``: its index on each axis of the padded grid; ``normalized``: as
            above), without kernel scaling; the feature ``similarity`` is taken on ``z``.
        Coordinate channels (``coord_encoding``): ``linspace(-1, 1)`` over each axis of the
            *unpadded* grid (0 on an axis of length 1), zero at padded points; ``score``/
            ``both`` append them to the scored features (feature and hybrid bases),
            ``aggregate``/``both`` to the values.
        Scores follow these formulas in IEEE arithmetic: a NaN feature makes its scores NaN,
            an infinite one makes them what the formula gives (docs/semantics.md).

    Candidates ``Cand(i)``
        ``all``: every token of the padded grid (position basis: every point of the query's
            dilation lattice). ``random``: ``num_candidates`` tokens, drawn once per call and
            shared by every query and every sample of the batch:
            ``torch.randperm(N, generator=generator)[:num_candidates]`` on the CPU, then sorted
            ascending; a generator is required. ``grid``: ``num_candidates`` points per axis,
            deduplicated, shared by every query: with ``grid_rounding="round"``
            ``torch.linspace(margin, L - 1 - margin, num_candidates, dtype=torch.float64)``
            rounded by ``torch.round`` (halves to even); with ``grid_rounding="truncate"`` (the
            research code's convention) the same ``linspace`` computed in float32 and truncated
            toward zero (``.long()``), its float32 rounding included. Random and grid
            candidates admit no padding. A boolean mask (attention: causal, key padding) may
            remove more.
        ``window``: neighbourhood attention (NATTEN's ``na1d/na2d/na3d``), for queries, keys and
            values on one grid ``S`` (`convnn_ref.window_attention`; not the image form). Each
            axis alone (length ``L``, ``K = kernel_size``, ``d = dilation``, ``s =
            window_stride``, ``c = causal``; ``K >= 2``, ``K*d <= L``, ``s <= K``) decides a set
            of key coordinates; a key is a candidate when it is in the set of every axis. The
            axis splits into ``d`` dilation groups by residue ``r = x % d``; a group holds
            ``L_r = ceil((L - r) / d)`` points, point ``x`` at group coordinate ``g = x // d``,
            and a query sees only its own group. Within the group, the query's *leader* is
            ``l = min(s*(g//s) + s//2, L_r - 1)`` (non-causal) or ``l = min(s*(g//s) + s - 1,
            L_r - 1)`` (causal): queries of one stride group share a window. Non-causal: the
            window is ``[w - K//2, w + (K-1)//2]`` in group coordinates with the centre ``w =
            clamp(l, K//2, L_r - 1 - (K-1)//2)``: shifted inward at the borders so it always
            holds K points (an even K reaches one point further left than right). Causal: the
            group coordinates ``[l - K + 1, g]`` (from the leader's K-window back, up to the
            query itself). The output keeps the grid's shape (every token is a query;
            ``stride`` must be 1, ``window_stride`` groups queries instead); no padding.
            Neighbourhood attention is ``basis='feature'``, ``similarity='scaled_dot'``,
            ``rho='softmax'``, ``kernel='sum'`` and ``k=None`` (every candidate); the config
            refuses anything else with ``candidates='window'`` (`convnn_ref.neighborhood_config`).

    Step 2, select ``N_k(i)``
        The ``k`` candidates of largest score (``k=None``: every candidate; sum kernel,
        feature or hybrid basis). Ranking: NaN first, then +inf, the numbers in descending
        order, -inf. Tie rule: among equal scores (NaN with NaN too) the candidate with the
        lower index (position in the candidate list) ranks first. ``self_slot="forced"`` puts
        the query's own token (the real token at the query's position) in slot 0 whatever its
        score or mask (stride 1; no padding in the position basis) and fills slots 1..k-1 with
        the best other candidates. Slots are ordered by ``rank`` (ranking and tie rule) or by
        ``offset`` (position basis: the candidate's position minus the query's,
        lexicographic; this maps slot t to conv tap t). A query with fewer than ``k`` allowed
        candidates (masks) leaves its last slots empty: they contribute nothing. k larger than
        the candidate set itself is an error.

    Step 3, aggregate ``y_i = b + sum_t A_t (rho_t v_{n_t(i)})`` over the filled slots
        ``rho``: ``ones``; ``softmax`` of ``rho_scale * s`` over the query's non-empty slots
        (``torch.softmax``: a NaN or +inf score among them makes the row NaN, all -inf too);
        ``scores``: the raw selected scores. A query with no non-empty slot gets ``y_i = b``.
        A value outside the filled slots never enters ``y_i``, not even as 0 times NaN.
        ``kernel``: ``full``, weight ``(C_out, C_in, k)``, ``A_t = weight[:, :, t]``;
        ``grouped``, weight ``(C_out, C_in/groups, k)`` as in ``nn.Conv1d(groups=...)``
        (``groups = C_in`` is depthwise; ``C_out/C_in`` its channel multiplier); ``sum``, no
        weight, ``A_t = I`` (attention). ``C_in`` counts the ``d`` coordinate channels when
        ``coord_encoding`` is ``aggregate``/``both``. The weight layout is exactly
        ``nn.Conv1d(C_in, C_out, kernel_size=k, stride=k, groups=groups).weight``: gathering
        the neighbours into a length ``N*k`` sequence and applying that Conv1d is the same
        function (`convnn_ref.aggregate.aggregate_as_conv1d`).

    Every field is validated here (types, ranges, combinations); integers accept anything
    ``operator.index`` takes and are stored as plain ints. A knob set away from its default
    where it computes nothing is refused by name (docs/semantics.md, "Inert knobs"). Checks
    that need the input (k against the candidates, channels against groups) happen when the
    input arrives.
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
    grid_rounding: GridRounding = "round"
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
    window_stride: IntOrTuple = 1
    causal: bool | tuple[bool, ...] = False

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            allowed = get_args(choices)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        # Integers: anything operator.index takes (numpy integers too), stored as plain ints.
        if self.k is None:
            if self.kernel != "sum" or self.basis == "position" or self.self_slot != "candidate":
                raise ValueError(
                    "k=None (every candidate) needs kernel='sum', basis 'feature' or 'hybrid' and "
                    f"self_slot='candidate', got kernel={self.kernel!r}, basis={self.basis!r}, self_slot={self.self_slot!r}"
                )
        else:
            self._set("k", check_int(self.k, "k", minimum=1))
        self._set("groups", check_int(self.groups, "groups", minimum=1))
        self._set("grid_margin", check_int(self.grid_margin, "grid_margin", minimum=0))
        if self.num_candidates is not None:
            self._set("num_candidates", check_int(self.num_candidates, "num_candidates", minimum=1))
        for name in ("stride", "dilation", "kernel_size"):
            value = getattr(self, name)
            if value is not None or name != "kernel_size":
                self._set(name, _int_or_tuple(value, name, minimum=1))
        self._set("padding", _normalized_padding(self.padding))
        check_bool(self.kernel_scaled, "kernel_scaled")
        # Real numbers: finite, in range.
        self._set("hybrid_lambda", check_real(self.hybrid_lambda, "hybrid_lambda", low=0.0, high=1.0))
        self._set("rho_scale", check_real(self.rho_scale, "rho_scale"))
        if self.scale is not None:
            self._set("scale", check_real(self.scale, "scale", low=0.0, low_open=True))
        # Combinations.
        if self.kernel == "full" and self.groups != 1:
            raise ValueError(f"kernel='full' needs groups=1, got groups={self.groups}; use kernel='grouped'")
        if self.kernel == "sum" and self.groups != 1:
            raise ValueError(f"kernel='sum' has no weight and takes no groups, got groups={self.groups}")
        if self.candidates in ("random", "grid"):
            if self.num_candidates is None:
                raise ValueError(f"candidates={self.candidates!r} needs num_candidates >= 1, got None")
        elif self.num_candidates is not None:
            raise ValueError(f"num_candidates is only used with candidates='random' or 'grid', got candidates={self.candidates!r}")
        has_padding = any(lo or hi for lo, hi in _padding_pairs(self.padding))
        self._check_window(has_padding)
        if self.basis != "position" and self.candidates != "window":
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
            if any(v != 1 for v in _as_tuple(self.stride, "stride")):
                raise ValueError(f"self_slot='forced' needs stride 1 (every token a query), got stride={self.stride!r}")
            if has_padding and self.basis == "position":
                raise ValueError("self_slot='forced' admits no padding in the position basis (a query may sit on a padded point)")
        refuse_inert_knobs(self)

    def _check_window(self, has_padding: bool) -> None:
        """``window_stride`` and ``causal``, and the neighbourhood-attention combination that
        ``candidates='window'`` needs (named errors)."""
        self._set("window_stride", _int_or_tuple(self.window_stride, "window_stride", minimum=1))
        if isinstance(self.causal, tuple):
            if not self.causal or not all(isinstance(c, bool) for c in self.causal):
                raise TypeError(f"causal must be a bool or a non-empty tuple of bools, got {self.causal!r}")
        else:
            check_bool(self.causal, "causal")
        window_knobs = _any_above_one(self.window_stride) or any(_as_causal(self.causal))
        if self.candidates != "window":
            if window_knobs:
                raise ValueError(
                    f"window_stride and causal belong to candidates='window', got candidates={self.candidates!r}, "
                    f"window_stride={self.window_stride!r}, causal={self.causal!r}"
                )
            return
        wanted = {"basis": "feature", "similarity": "scaled_dot", "rho": "softmax", "kernel": "sum",
                  "self_slot": "candidate", "coord_encoding": "none", "border": "zeros", "slot_order": "rank"}
        for name, value in wanted.items():
            if getattr(self, name) != value:
                raise ValueError(f"candidates='window' is neighbourhood attention and needs {name}={value!r}, got {getattr(self, name)!r}")
        if self.k is not None:
            raise ValueError(f"candidates='window' attends to every key of the window: k must be None, got k={self.k}")
        if self.kernel_size is None:
            raise ValueError("candidates='window' needs kernel_size (the window's extent on each axis)")
        if any(v < 2 for v in _as_tuple(self.kernel_size, "kernel_size")):
            raise ValueError(f"candidates='window' needs kernel_size >= 2 on every axis (as NATTEN), got kernel_size={self.kernel_size!r}")
        if _any_above_one(self.stride):
            raise ValueError(f"candidates='window' keeps every query: stride must be 1 (window_stride groups queries), got stride={self.stride!r}")
        if has_padding:
            raise ValueError(f"candidates='window' shifts windows inward at the borders and admits no padding, got padding={self.padding!r}")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def replace(self, **changes: object) -> ConvNNConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def weighted(self) -> bool:
        """True when the layer has a weight of shape ``(C_out, C_in/groups, k)``."""
        return self.kernel != "sum"


def refuse_inert_knobs(config: ConvNNConfig) -> None:
    """A knob set away from its default where it computes nothing is refused, naming the knob,
    the setting that makes it inert and why (docs/semantics.md, "Inert knobs"); ``border=
    'in_bounds'``, which only declares that there is no padding, is warned about instead."""
    basis = config.basis
    odd_window = all(k % 2 for k in _as_tuple(1 if config.kernel_size is None else config.kernel_size, "kernel_size"))
    scored_by = f"basis={basis!r} scores features by similarity, not positions"
    inert: list[tuple[bool, str, str]] = [
        (config.metric != "chebyshev" and basis != "position", f"metric={config.metric!r}", scored_by),
        (config.coordinates != "integer" and basis == "feature", f"coordinates={config.coordinates!r}",
         "basis='feature' scores no coordinates (only the position and hybrid bases do)"),
        (config.coordinates != "integer" and basis == "position" and config.kernel_size is not None and config.kernel_scaled,
         f"coordinates={config.coordinates!r}", "kernel_scaled=True measures position differences in window units, "
         "whatever the coordinates (set kernel_scaled=False to score normalized coordinates)"),
        (config.kernel_size is not None and basis != "position" and config.candidates != "window",
         f"kernel_size={config.kernel_size!r}",
         f"basis={basis!r} has no window unless candidates='window': its queries are the real tokens and every candidate is scored"),
        (not config.kernel_scaled and (basis != "position" or config.kernel_size is None), "kernel_scaled=False",
         "it divides position differences by the window (basis='position' with kernel_size set)"),
        (config.similarity != "cosine" and basis == "position", f"similarity={config.similarity!r}",
         "basis='position' scores positions by metric, not features by similarity"),
        (config.scale is not None and config.similarity != "scaled_dot", f"scale={config.scale!r}",
         f"only similarity='scaled_dot' has a scale, got similarity={config.similarity!r}"),
        (config.hybrid_lambda != 0.5 and basis != "hybrid", f"hybrid_lambda={config.hybrid_lambda!r}",
         f"only basis='hybrid' mixes features and coordinates, got basis={basis!r}"),
        (config.grid_margin != 0 and config.candidates != "grid", f"grid_margin={config.grid_margin!r}",
         f"only candidates='grid' has a margin, got candidates={config.candidates!r}"),
        (config.grid_rounding != "round" and config.candidates != "grid", f"grid_rounding={config.grid_rounding!r}",
         f"only candidates='grid' rounds a grid, got candidates={config.candidates!r}"),
        (config.rho_scale != 1.0 and config.rho != "softmax", f"rho_scale={config.rho_scale!r}",
         f"only rho='softmax' scales its scores, got rho={config.rho!r}"),
        (config.coord_encoding in ("score", "both") and basis == "position", f"coord_encoding={config.coord_encoding!r}",
         "basis='position' scores no features, so coordinate channels cannot enter its scores; use 'aggregate'"),
        (config.self_slot == "forced" and basis == "position" and config.candidates == "all" and odd_window,
         "self_slot='forced'", "with basis='position', candidates='all' and an odd window (kernel_size, 1 when None) "
         "the query's own token is its unique nearest candidate and takes slot 0 anyway"),
    ]
    for is_inert, knob, why in inert:
        if is_inert:
            raise ValueError(f"{knob} has no effect here and is refused: {why}")
    if config.border == "in_bounds":
        warnings.warn(
            "border='in_bounds' has no effect on the output: it only refuses padding, and without padding "
            "every candidate is a real token under either border",
            UserWarning,
            stacklevel=4,
        )


def _any_above_one(value: object) -> bool:
    return any(v > 1 for v in _as_tuple(value, "value"))


def _as_causal(value: bool | tuple[bool, ...]) -> tuple[bool, ...]:
    return value if isinstance(value, tuple) else (value,)


def causal_per_axis(value: bool | tuple[bool, ...], d: int) -> tuple[bool, ...]:
    """``causal`` for each of ``d`` axes (a bool broadcasts; a tuple must have ``d`` entries)."""
    t = _as_causal(value)
    if len(t) == 1:
        return t * d
    if len(t) != d:
        raise ValueError(f"causal={value!r} has {len(t)} entries but the grid has {d} axes")
    return t


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a plain int: anything ``operator.index`` takes (numpy integers, 0-d integer
    arrays and tensors too), not a bool, nor an array or tensor with a shape or a bool dtype.
    Raises TypeError / ValueError naming ``name`` and the constraint."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    shape = getattr(value, "shape", None)
    if shape is not None and tuple(shape) != ():
        raise TypeError(f"{name} must be an int, got {type(value).__name__} of shape {tuple(shape)} (pass a plain int)")
    if "bool" in str(getattr(value, "dtype", "")):
        raise TypeError(f"{name} must be an int, got a bool {type(value).__name__} {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={number}")
    return number


def check_real(
    value: object, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a finite float (an int or a float, numpy scalars too; not a bool), within
    ``[low, high]`` (``(low, high]`` with ``low_open``). Raises TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {name}={number}")
    if low is not None and (number <= low if low_open else number < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {name}={number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {name}={number}")
    return number


def check_bool(value: object, name: str) -> bool:
    """``value`` is a bool (True or False, nothing that merely converts to one)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def _int_or_tuple(value: object, name: str, *, minimum: int) -> int | tuple[int, ...]:
    """An int or a non-empty tuple of ints, each >= minimum, as plain ints (same form)."""
    if isinstance(value, tuple):
        if not value:
            raise ValueError(f"{name} must be an int or a non-empty tuple of ints, got ()")
        return tuple(_axis_int(v, name, value, minimum) for v in value)
    return _axis_int(value, name, value, minimum)


def _axis_int(v: object, name: str, whole: object, minimum: int | None) -> int:
    try:
        number = check_int(v, name)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {whole!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {name}={whole!r}")
    return number


def _normalized_padding(padding: object) -> Padding:
    """padding as plain ints, in the form given (int, tuple of ints, tuple of (lo, hi) pairs)."""
    out: Padding
    if isinstance(padding, tuple):
        pairs = _padding_pairs(padding)
        out = tuple(pair if isinstance(p, tuple) else pair[0] for p, pair in zip(padding, pairs))  # type: ignore[assignment]
    else:
        out = _padding_pairs(padding)[0][0]
    for lo, hi in _padding_pairs(out):
        if lo < 0 or hi < 0:
            raise ValueError(f"padding must be >= 0 on every side, got padding={padding!r}")
    return out


def _as_tuple(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return tuple(_axis_int(v, name, value, None) for v in value)
    return (_axis_int(value, name, value, None),)


def _padding_pairs(padding: object) -> tuple[tuple[int, int], ...]:
    message = f"padding must be an int, a tuple of ints or a tuple of (lo, hi) pairs, got {padding!r}"
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r}: string paddings are resolved by from_conv; ConvNNConfig takes ints")
    if isinstance(padding, tuple):
        if not padding:
            raise ValueError(f"padding must not be an empty tuple, got {padding!r}")
        out = []
        for p in padding:
            if isinstance(p, tuple):
                if len(p) != 2:
                    raise ValueError(message)
                out.append((_padding_int(p[0], message), _padding_int(p[1], message)))
            else:
                v = _padding_int(p, message)
                out.append((v, v))
        return tuple(out)
    v = _padding_int(padding, message)
    return ((v, v),)


def _padding_int(value: object, message: str) -> int:
    try:
        return check_int(value, "padding")
    except TypeError:
        raise TypeError(message) from None


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
