"""Named sweeps. A preset is data: its cases, its timing settings and its bars (the headline
comparisons its report leads with); `measure` does the rest.

- ``smoke``: tiny shapes, every mode, baseline and direction once; what ``make verify`` runs
  (with ``--benchmark-disable``) and what plain ``pytest suites`` collects. Under a minute.
- ``default``: this project's CPU sweep (B = 8, C = 64, float32), about 15 minutes on one
  thread (its 70 pair sets about 9 of them), holding every configuration its bars are read from.
- ``canonical``: a fixed small set (forward, 32×32, B = 8, C = 64, float32) whose numbers two
  users can compare across machines.
- ``full``: for GPU hosts: resolutions up to 128², more k, bfloat16 and float16 beside float32.
- ``tiny``: six small forward cases of about a second each; the runner's own tests (process
  ownership, the journal lock, resume) run it.

`definitions` turns a preset's baselines and bars into the data the sweep writes beside its
rows (the report reads them from there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from suites.bench.baselines import BASELINES
from suites.bench.cases import Case
from suites.bench.paired import PairPlan

FWD, BOTH = ("forward",), ("forward", "forward+backward")


@dataclass(frozen=True)
class Timing:
    """Rounds are planned so one case's timed loop takes about ``target_s`` (within
    [min_rounds, max_rounds]); a first call slower than ``call_limit_s`` stops the case with
    status ``time_limit``. A ConvNN row's pairs with each baseline it is divided by
    (`paired`): about ``pair_budget_s`` per baseline, at least ``min_pairs`` (however slow the
    calls) and at most ``max_pairs``."""

    min_rounds: int = 3
    max_rounds: int = 30
    target_s: float = 1.0
    call_limit_s: float = 60.0
    pair_budget_s: float = 2.0
    min_pairs: int = 12
    max_pairs: int = 200

    def pair_plan(self) -> PairPlan:
        return PairPlan(budget_s=self.pair_budget_s, min_pairs=self.min_pairs, max_pairs=self.max_pairs)


@dataclass(frozen=True)
class Bar:
    """A headline comparison: the ratio ConvNN / ``baseline`` of ``metric`` (``time``: median
    time; ``memory``: peak tensor memory) on ConvNN rows of ``mode`` with ``k`` neighbours (None:
    k = N), ``direction``, batch ``B``, ``C`` channels, ``dtype``, at each of ``sides`` (None:
    every side measured). ``what`` says what is compared, ``name`` adds sizes, batch and
    direction; ``target``: the ratio aimed at (None: reported without one)."""

    name: str
    what: str
    mode: str
    baseline: str
    metric: str
    direction: str
    sides: tuple[int, ...] | None
    k: int | None
    B: int = 8
    C: int = 64
    dtype: str = "float32"
    target: float | None = None


def _bars(what: str, mode: str, baseline: str, metric: str, sides: tuple[int, ...] | None, k: int | None,
          *, target: float | None = None, B: int = 8) -> list[Bar]:
    """One bar per direction, named ``"<what> at <sizes>, B=<B>, <direction>"``."""
    at = f" at {', '.join(f'{s}²' for s in sides)}" if sides else ""
    return [Bar(f"{what}{at}, B={B}, {d}", what, mode, baseline, metric, d, sides, k, B=B, target=target) for d in BOTH]


BARS: tuple[Bar, ...] = (
    *_bars("feature k=9 cosine vs dense-naive, time", "feature", "dense-naive", "time", (56,), 9, target=1 / 6),
    *_bars("feature k=9 cosine vs fused SDPA, time", "feature", "sdpa", "time", (32, 56, 64), 9, target=1.2),
    *_bars("feature k=9 cosine vs fused SDPA, time", "feature", "sdpa", "time", (8, 16), 9, target=2.0),
    *_bars("position 3×3 vs F.conv2d, time", "position", "conv2d", "time", (32, 56), 9, target=1.5),
    *_bars("depthwise position 3×3 vs depthwise F.conv2d, time", "position-depthwise", "conv2d-depthwise", "time", None, 9),
    *_bars("attention k=N vs SDPA math backend, time", "attention", "sdpa-math", "time", None, None, target=1.3),
    *_bars("attention k=N vs fused SDPA, time", "attention", "sdpa", "time", None, None),
    *_bars("KVT k=9 vs dense masked KVT, time", "kvt", "kvt-dense", "time", None, 9),
    *_bars("feature k=9 cosine vs dense-naive, peak memory", "feature", "dense-naive", "memory", (64,), 9, target=1 / 8, B=16),
    *_bars("feature k=9 cosine vs fused SDPA, peak memory", "feature", "sdpa", "memory", (64,), 9, target=4.0, B=16),
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    build: Callable[[str, tuple[str, ...]], list[Case]]
    device: str = "cpu"
    timing: Timing = Timing()
    bars: tuple[Bar, ...] = ()

    def cases(self, device: str | None = None, impls: Iterable[str] = ("reference",)) -> list[Case]:
        """The preset's cases on ``device`` (its default when None), with ConvNN rows for
        every implementation in ``impls``, duplicates removed, in sweep order: grouped by shape
        (side, B, C, dtype, direction), the declared order kept within a group, so that each
        ConvNN case runs next to the baselines it is divided by and, on a shared host, both
        see the same load."""
        seen: dict[str, Case] = {}
        for case in self.build(device or self.device, tuple(impls)):
            seen.setdefault(case.id, case)
        return sorted(seen.values(), key=lambda c: (c.side, c.B, c.C, c.dtype, c.direction))


def _sweep(
    impls: Iterable[str],
    mode: str,
    sides: Iterable[int],
    ks: Iterable[int],
    directions: Iterable[str],
    **fields: object,
) -> list[Case]:
    """Cases over implementations × sides × k × directions for one mode."""
    out = []
    for impl in impls:
        for side in sides:
            for k in ks:
                for direction in directions:
                    kw = dict(fields)
                    if mode.startswith("position"):
                        kw.setdefault("kernel_size", round(k**0.5))
                    k_eff = side * side if k == 0 else k  # k = 0 stands for k = N
                    out.append(Case(impl, mode, k_eff, side, direction=direction, **kw))  # type: ignore[arg-type]
    return out


def _smoke(device: str, impls: tuple[str, ...]) -> list[Case]:
    small = {"C": 8, "B": 2, "device": device}
    cases: list[Case] = []
    for direction in BOTH:
        d = (direction,)
        cases += _sweep((*impls, "conv2d"), "position", (6,), (9,), d, **small)
        cases += _sweep((*impls, "conv2d-depthwise"), "position-depthwise", (6,), (9,), d, **small)
        cases += _sweep((*impls, "dense-naive"), "feature", (6,), (4,), d, **small)
        cases += _sweep(impls, "feature-random", (6,), (4,), d, r=12, **small)
        cases += _sweep(impls, "feature-grid", (6,), (4,), d, r=3, **small)
        cases += _sweep(impls, "hybrid", (6,), (4,), d, **small)
        cases += _sweep((*impls, "sdpa", "sdpa-math"), "attention", (6,), (0,), d, **small)
        cases += _sweep((*impls, "kvt-dense"), "kvt", (6,), (5,), d, **small)
        cases += _neighborhood((*impls, "sdpa-na-mask"), (6,), (3,), d, **small)
    cases += _neighborhood(("natten-na2d",), (8,), (3,), FWD, C=8, B=2, device=device)  # no CPU backward
    return cases


def _neighborhood(impls: Iterable[str], sides: Iterable[int], kernels: Iterable[int], directions: Iterable[str], **fields: object) -> list[Case]:
    """Neighbourhood-attention rows (mode ``neighborhood``, k = kernel²)."""
    return [
        Case(impl, "neighborhood", kernel * kernel, side, direction=direction, kernel_size=kernel, **fields)  # type: ignore[arg-type]
        for impl in impls for side in sides for kernel in kernels for direction in directions
    ]


def _default(device: str, impls: tuple[str, ...]) -> list[Case]:
    on = {"device": device}
    big = {"device": device, "B": 16}
    cases: list[Case] = []
    # Feature k = 9 against SDPA (one head) and dense-naive, time against resolution.
    cases += _sweep(impls, "feature", (8, 16, 32, 56, 64), (9,), BOTH, **on)
    cases += _sweep(("sdpa",), "attention", (8, 16, 32, 56, 64), (0,), BOTH, **on)
    cases += _sweep(("dense-naive",), "feature", (8, 16, 32, 56), (9,), BOTH, **on)
    # Position mode 3x3 against F.conv2d; the depthwise variant against a depthwise conv.
    cases += _sweep((*impls, "conv2d"), "position", (8, 16, 32, 56, 64), (9,), BOTH, **on)
    cases += _sweep((*impls, "conv2d-depthwise"), "position-depthwise", (32, 56), (9,), BOTH, **on)
    # Attention k = N against SDPA (fused and math backends).
    cases += _sweep((*impls, "sdpa", "sdpa-math"), "attention", (16, 32), (0,), BOTH, **on)
    cases += _sweep((*impls, "sdpa", "sdpa-math"), "attention", (56,), (0,), FWD, **on)
    # Time against k.
    cases += _sweep(impls, "feature", (32,), (1, 4, 9, 16, 25, 49, 64), FWD, **on)
    cases += _sweep((*impls, "conv2d"), "position", (32,), (1, 9, 25, 49), FWD, **on)
    # KVT (k < N) against the dense masked reference; random, grid candidates; hybrid.
    cases += _sweep((*impls, "kvt-dense"), "kvt", (32,), (9, 64), FWD, **on)
    cases += _sweep((*impls, "kvt-dense"), "kvt", (32,), (9,), BOTH, **on)
    cases += _sweep(impls, "feature-random", (32, 56), (9,), FWD, r=256, **on)
    cases += _sweep(impls, "feature-grid", (32, 56), (9,), FWD, r=16, **on)
    cases += _sweep(impls, "hybrid", (32, 56), (9,), FWD, **on)
    # Neighbourhood attention, one head, D = C = 64: the reference, NATTEN, compiled Flex and SDPA
    # with the dense mask (its N x N mask: to 64²), full SDPA from the attention rows above and here.
    cases += _neighborhood((*impls, "natten-na2d"), (32, 56, 128), (3, 7, 13), FWD, **on)
    cases += _neighborhood(("flex-na-compiled",), (32, 56, 128), (7,), FWD, **on)
    cases += _neighborhood(("sdpa-na-mask",), (32, 56), (3, 7, 13), FWD, **on)
    cases += _neighborhood((*impls, "sdpa-na-mask"), (32, 56), (7,), ("forward+backward",), **on)
    cases += _sweep(("sdpa",), "attention", (128,), (0,), FWD, **on)
    # Peak memory at 64x64 with B = 16.
    cases += _sweep((*impls, "dense-naive"), "feature", (64,), (9,), BOTH, **big)
    cases += _sweep(("sdpa",), "attention", (64,), (0,), BOTH, **big)
    return cases


def _canonical(device: str, impls: tuple[str, ...]) -> list[Case]:
    on = {"device": device}
    cases: list[Case] = []
    cases += _sweep((*impls, "dense-naive"), "feature", (32,), (9,), FWD, **on)
    cases += _sweep(("sdpa",), "attention", (32,), (0,), FWD, **on)
    cases += _sweep((*impls, "conv2d"), "position", (32,), (9,), FWD, **on)
    cases += _sweep((*impls, "sdpa-math"), "attention", (32,), (0,), FWD, **on)
    cases += _sweep((*impls, "kvt-dense"), "kvt", (32,), (16,), FWD, **on)
    return cases


def _full(device: str, impls: tuple[str, ...]) -> list[Case]:
    cases: list[Case] = []
    sides = (8, 16, 32, 56, 64, 128)
    for dtype in ("float32", "bfloat16"):
        on = {"device": device, "dtype": dtype}
        cases += _sweep(impls, "feature", sides, (9,), BOTH, **on)
        cases += _sweep(("sdpa",), "attention", sides, (0,), BOTH, **on)
        cases += _sweep(("dense-naive",), "feature", (8, 16, 32, 56, 64), (9,), BOTH, **on)
        cases += _sweep((*impls, "conv2d"), "position", sides, (9,), BOTH, **on)
        cases += _sweep((*impls, "sdpa", "sdpa-math"), "attention", (16, 32, 64, 128), (0,), BOTH, **on)
        cases += _sweep(impls, "feature", (64,), (1, 4, 16, 25, 49, 64), FWD, **on)
        cases += _sweep((*impls, "conv2d"), "position", (64,), (1, 25, 49), FWD, **on)
        cases += _sweep((*impls, "kvt-dense"), "kvt", (64,), (16, 256), BOTH, **on)
    on16 = {"device": device, "dtype": "float16"}
    cases += _sweep(impls, "feature", (32, 64, 128), (9,), FWD, **on16)
    cases += _sweep(("sdpa",), "attention", (32, 64, 128), (0,), FWD, **on16)
    cases += _sweep((*impls, "conv2d"), "position", (32, 64, 128), (9,), FWD, **on16)
    on = {"device": device}
    cases += _sweep((*impls, "conv2d-depthwise"), "position-depthwise", (64, 128), (9,), BOTH, **on)
    cases += _sweep(impls, "feature-random", (64, 128), (9,), FWD, r=1024, **on)
    cases += _sweep(impls, "feature-grid", (64, 128), (9,), FWD, r=32, **on)
    cases += _sweep(impls, "hybrid", (64, 128), (9,), FWD, **on)
    cases += _sweep((*impls, "dense-naive"), "feature", (64,), (9,), BOTH, device=device, B=16)
    cases += _sweep(("sdpa",), "attention", (64,), (0,), BOTH, device=device, B=16)
    return cases


def _tiny(device: str, impls: tuple[str, ...]) -> list[Case]:
    small = {"C": 8, "B": 2, "device": device}
    cases: list[Case] = []
    cases += _sweep((*impls, "conv2d"), "position", (8,), (9,), FWD, **small)
    cases += _sweep((*impls, "sdpa"), "attention", (8,), (0,), FWD, **small)
    cases += _sweep((*impls, "kvt-dense"), "kvt", (8,), (5,), FWD, **small)
    return cases


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("smoke", "tiny shapes, every mode, baseline and direction once", _smoke,
               timing=Timing(1, 3, 0.02, 10.0, pair_budget_s=0.05, min_pairs=6)),
        Preset("default", "CPU sweep, B=8, C=64, float32; holds every bar", _default,
               timing=Timing(3, 15, 1.0, 60.0, pair_budget_s=2.0, min_pairs=10), bars=BARS),
        Preset("canonical", "fixed forward set at 32x32 for comparing machines", _canonical,
               timing=Timing(10, 50, 2.0, 60.0, pair_budget_s=4.0, min_pairs=20), bars=BARS),
        Preset("full", "GPU sweep up to 128x128, float32/bfloat16/float16", _full, device="cuda",
               timing=Timing(5, 50, 0.3, 20.0, pair_budget_s=1.0, min_pairs=12), bars=BARS),
        Preset("tiny", "six small forward cases of about a second each (the runner's tests)", _tiny,
               timing=Timing(3, 5000, 0.6, 10.0, pair_budget_s=0.2, min_pairs=6)),
    )
}


def partners(case: Case, cases: Iterable[Case]) -> list[tuple[str, Case]]:
    """The baseline cases a ConvNN ``case`` is timed against in interleaved pairs: for every
    baseline whose ``compared_with`` names the case's mode, the preset's case of that baseline
    equal to ``case`` on the baseline's ``match`` fields (the same rule by which the report
    divides rows, so every time ratio it states is a paired one). Baseline rows pair with
    nothing. Returns (baseline name, baseline case) in `BASELINES` order."""
    if case.implementation in BASELINES:
        return []
    pool = list(cases)
    mine = case.fields()
    out = []
    for name, baseline in BASELINES.items():
        if case.mode not in baseline.compared_with:
            continue
        for other in pool:
            theirs = other.fields()
            if other.implementation == name and all(mine.get(f) == theirs.get(f) for f in baseline.match):
                out.append((name, other))
                break
    return out


def definitions(preset: Preset, cases: Iterable[Case]) -> dict[str, Any]:
    """What the sweep writes beside its rows: the baselines its cases time (what each is, which
    ConvNN rows it is compared with, on which fields) and the preset's bars."""
    used = {c.implementation for c in cases}
    return {
        "baselines": [b.as_data() for name, b in BASELINES.items() if name in used],
        "bars": [{**asdict(bar), "sides": list(bar.sides) if bar.sides is not None else None} for bar in preset.bars],
    }


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
