"""The error model of the equivalence suite and its failure messages (docs/error-model.md).

Rule, for an output and for every gradient:

    max|cand - gold|  <=  BASE_FACTOR * base_error  +  floor

- gold: the computation in float64 on the test-dtype inputs promoted to float64;
- base: the trusted operator (``F.conv*d``, SDPA, ``nn.MultiheadAttention``; where PyTorch has
  none, the naive oracle) in the test dtype;
- perturbed: gold again on its inputs perturbed by `PERTURB_ULPS` units in the last place of the
  test dtype (each element times ``1 + PERTURB_ULPS * eps(dtype) * u``, u uniform in [-1, 1]
  from the case's seed). A backward-stable implementation computes the exact result of inputs
  perturbed by a few of its own ulps, so this measures what rounding in the test dtype costs on
  this very input: large for a softmax over large scores or a sum that cancels, tiny for a
  well-conditioned one (and it does not depend on how lucky the baseline's rounding was);
- base_error: ``max(max|base - gold|, max|perturbed - gold|)``;
- cand: the implementation under test in the test dtype;
- floor: ``eps(dtype) * (FLOOR_ULPS + SUM_GROWTH * sqrt(n)) * magnitude``: a few units in the
  last place plus the growth of an n-term sum taken in another order, where n is the reduction
  length of *that* tensor (an output, or one gradient: each has its own). ``magnitude`` is
  ``max|gold|``, clamped below at ``sqrt(n)`` when the property supplies no perturbed gold (its
  terms are then taken to be of unit size, which the standard-normal inputs of those properties
  are: the partial sums of n such terms reach about sqrt(n), and every addition rounds at the
  size of its partial sum, whatever the size of the total),
  times ``1 + score_gain`` where the output weighs its slots by a softmax of scores the
  perturbation does not fully move (coordinates the implementation computes, or a property with
  no perturbed gold): ``score_gain = rho_scale * max|score|``, since a score rounded at its own
  size shifts the softmax's weights by that much per unit of relative error
  (`suites.ties.image_score_gain`).

A failure names the property, its kind, the case (config and seed), the worst element (index,
cand, gold, base), both errors and the bound, and one command that replays it. An output (or
gradient) in another dtype, on another device or of another shape than expected fails too.

Passing checks are measured: inside `measuring()`, the check closest to its bound (largest
``max_error / bound``) over all of a test's examples is kept, per dtype, so that the runner can
report ``max_error``, ``base_error`` and ``bound`` of passing properties.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import torch

BASE_FACTOR = 2.0
#: Units in the last place at the output's magnitude, whatever the reduction: one rounding per
#: operation on the way (a scale folded into another factor, a softmax's exp and divide, ...).
FLOOR_ULPS = 8.0
#: Growth with the reduction length n: the error of an n-term sum in some other order grows like
#: sqrt(n) ulps for random-signed terms; the factor covers orders that are not random (a pairwise
#: tree against a sequential loop, blocked products).
SUM_GROWTH = 2.0
#: How far (in float64 ulps, relative) `perturb` moves every input element.
PERTURB_ULPS = 4.0
#: Ulps of the score dtype that separate a "clear" selection from a near-tie (`score_gap`).
SCORE_GAP_ULPS = 16.0

#: What went wrong, one word each; a failure message says it on its ``kind:`` line.
KINDS = (
    "mismatch",  # values beyond the bound
    "shape",
    "dtype",
    "device",
    "nan",  # NaN where gold is finite
    "selection",  # the selected set or its scores are not the top-k
    "tie-rule",  # exact ties ordered other than the declared canonical rule
    "nondeterministic",  # two identical calls differ
    "no-error",  # invalid input accepted
    "error-convention",  # invalid input refused, but not with the named error the contract asks for
    "structure",  # a structural claim (a trap, a property of the table) does not hold
)

_replay_options: list[str] = []


def set_replay_options(options: Sequence[str]) -> None:
    """Extra pytest options the replay line must carry (``--impl`` specs); set by the plugin."""
    _replay_options[:] = list(options)


# ------------------------------------------------------------------------ measuring passes


@dataclass
class Measurement:
    """The worst passing check of a test so far (by ``max_error / bound``), overall and per dtype."""

    max_error: float = 0.0
    base_error: float = 0.0
    bound: float = math.inf
    checks: int = 0
    by_dtype: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def add(self, max_error: float, base_error: float, bound: float, dtype: str = "") -> None:
        self.checks += 1
        if self.checks == 1 or _ratio(max_error, bound) > _ratio(self.max_error, self.bound):
            self.max_error, self.base_error, self.bound = max_error, base_error, bound
        worst = self.by_dtype.get(dtype)
        if worst is None or _ratio(max_error, bound) > _ratio(worst[0], worst[2]):
            self.by_dtype[dtype] = (max_error, base_error, bound)

    def properties(self) -> list[tuple[str, object]]:
        """``(name, value)`` pairs for ``record_property``; empty when nothing was checked."""
        if not self.checks:
            return []
        per_dtype = {d: {"max_error": e, "base_error": b, "bound": bd} for d, (e, b, bd) in self.by_dtype.items() if d}
        return [
            ("max_error", self.max_error),
            ("base_error", self.base_error),
            ("bound", self.bound),
            ("errors_by_dtype", per_dtype),
        ]


def _ratio(err: float, bound: float) -> float:
    return err / bound if bound > 0 else (math.inf if err > 0 else 0.0)


_measurement: ContextVar[Measurement | None] = ContextVar("measurement", default=None)


@contextmanager
def measuring() -> Iterator[Measurement]:
    """Collect the worst passing check of the checks run inside the block."""
    m = Measurement()
    token = _measurement.set(m)
    try:
        yield m
    finally:
        _measurement.reset(token)


def _measure(max_error: float, base_error: float, bound_: float, dtype: torch.dtype | None = None) -> None:
    m = _measurement.get()
    if m is not None:
        m.add(max_error, base_error, bound_, "" if dtype is None else _name(dtype))


# ---------------------------------------------------------------------------- the rule


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of ``dtype``."""
    return torch.finfo(dtype).eps


def finite_max(t: torch.Tensor) -> float:
    """``max|t|`` over its finite elements (0 when there are none)."""
    finite = t[torch.isfinite(t)] if t.numel() else t
    return float(finite.abs().max()) if finite.numel() else 0.0


def floor(
    gold: torch.Tensor, dtype: torch.dtype, reduction: int, *, unit_terms: bool = True, score_gain: float = 0.0
) -> float:
    """The absolute error no implementation can be asked to beat (see the module docstring):
    ``eps(dtype) * (FLOOR_ULPS + SUM_GROWTH * sqrt(reduction)) * magnitude * (1 + score_gain)``
    with magnitude ``max|gold|``, clamped below at ``sqrt(reduction)`` when ``unit_terms`` (the
    size of a partial sum of that many unit-size terms)."""
    mag = finite_max(gold)
    if unit_terms:
        mag = max(mag, math.sqrt(max(reduction, 1)))
    return eps(dtype) * (FLOOR_ULPS + SUM_GROWTH * math.sqrt(max(reduction, 1))) * mag * (1.0 + score_gain)


def bound(
    base_error: float, gold: torch.Tensor, dtype: torch.dtype, reduction: int, *, unit_terms: bool = True,
    score_gain: float = 0.0,
) -> float:
    """The largest ``max|cand - gold|`` a correct implementation may show:
    ``BASE_FACTOR * base_error + floor(gold, dtype, reduction)``. The suite's checks and the
    benchmark's verdict both use it."""
    return BASE_FACTOR * base_error + floor(gold, dtype, reduction, unit_terms=unit_terms, score_gain=score_gain)


def perturb(tensors: Mapping[str, torch.Tensor | None], seed: int) -> dict[str, torch.Tensor | None]:
    """float64 CPU copies of ``tensors`` with every element moved by up to `PERTURB_ULPS` ulps of
    *its own* dtype (relative: the test dtype's rounding), from a generator seeded with ``seed``
    (the same perturbation on every replay). Integer and boolean tensors (masks) pass unchanged."""
    g = torch.Generator().manual_seed(seed + 977)
    out: dict[str, torch.Tensor | None] = {}
    for name, t in tensors.items():
        if t is None or not t.is_floating_point():
            out[name] = t
            continue
        t64 = t.detach().to("cpu", torch.float64)
        u = torch.rand(t64.shape, generator=g, dtype=torch.float64) * 2 - 1
        out[name] = t64 * (1 + PERTURB_ULPS * eps(t.dtype) * u)
    return out


def score_gap(scores: torch.Tensor, dtype: torch.dtype, dim: int) -> float:
    """The one gap rule: two scores closer than this may swap places when computed in ``dtype``
    in another order (``SCORE_GAP_ULPS * eps * (max|s| + 1) * sqrt(dim)``, ``dim`` the length of
    the dot products behind a score)."""
    return SCORE_GAP_ULPS * eps(dtype) * (finite_max(scores) + 1.0) * math.sqrt(max(dim, 1))


def clear_rows(scores: torch.Tensor, k: int, gap: float) -> torch.Tensor:
    """Rows ``(..., Nq)`` of ``scores`` ``(..., Nq, M)`` whose k-th and (k+1)-th largest scores
    differ by more than ``gap``: their top-k *set* is the same in every correct implementation."""
    if k >= scores.shape[-1]:
        return torch.ones(scores.shape[:-1], dtype=torch.bool, device=scores.device)
    ordered = scores.sort(dim=-1, descending=True).values
    return (ordered[..., k - 1] - ordered[..., k]) > gap


# ----------------------------------------------------------------------------- messages


def replay_command() -> str:
    """One shell line that reruns the current test under the current profile (derandomized under
    ``ci``: the same examples, the same shrunk failure), from any directory: the test file by a
    path that resolves from the current directory, the import path and the ``--impl`` options."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "<test id>").rsplit(" (", 1)[0]
    return replay_line(current, _replay_options, os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def replay_line(nodeid: str, options: Sequence[str], profile: str, *, pythonpath: str | None = None) -> str:
    """The replay command of test ``nodeid`` (as pytest prints it, relative to its rootdir);
    ``pythonpath``: the import path the run had (default: this process's ``PYTHONPATH``)."""
    path, sep, rest = nodeid.partition("::")
    file = _test_path(path)
    env = [f"HYPOTHESIS_PROFILE={profile}"]
    pythonpath = _import_path(pythonpath)
    if pythonpath:
        env.append(f"PYTHONPATH={shlex.quote(pythonpath)}")
    extra = " ".join(shlex.quote(o) for o in options)
    line = f"{' '.join(env)} python -m pytest {shlex.quote(file + sep + rest)} -p suites.pytest_plugin -p no:cacheprovider"
    line = f"{line} {extra}".rstrip()
    if profile != "ci":
        line += "  # not derandomized: add the @reproduce_failure blob printed above, or use HYPOTHESIS_PROFILE=ci"
    return line


def _test_path(path: str) -> str:
    """A test file's path as the replay line names it: relative to the current directory when it
    lies below it, else absolute (the suite installed elsewhere than the user's project)."""
    here = Path.cwd()
    candidate = Path(path)
    if not candidate.is_absolute():
        root = Path(__file__).resolve().parent.parent  # the directory holding the suites package
        candidate = root / path if (root / path).exists() else here / path
    try:
        return str(candidate.resolve().relative_to(here))
    except ValueError:
        return str(candidate.resolve())


def _import_path(pythonpath: str | None = None) -> str:
    """PYTHONPATH for the replay: the run's entries, entries below the current directory written
    relative to it (so that a line pasted into a bug report stays valid in a checkout)."""
    here = Path.cwd()
    raw = os.environ.get("PYTHONPATH", "") if pythonpath is None else pythonpath
    entries = [e for e in raw.split(os.pathsep) if e]
    out = []
    for entry in entries:
        p = Path(entry).resolve()
        try:
            rel = p.relative_to(here)
            out.append(str(rel) if str(rel) != "." else ".")
        except ValueError:
            out.append(str(p))
    if not out and "" in sys.path:
        out.append(".")
    return os.pathsep.join(dict.fromkeys(out))


def describe(prop: str, case: object, what: str, lines: Sequence[str], *, kind: str = "mismatch") -> str:
    """A failure message: property, what failed, its kind, details, the case and the replay line."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    body = "\n".join(f"  {line}" for line in lines)
    body = f"{body}\n" if body else ""
    return f"[{prop}] {what}\n  kind: {kind}\n{body}  case: {case!r}\n  replay: {replay_command()}"


def _as_gold(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _same_device(got: torch.device, expected: torch.device) -> bool:
    return got.type == expected.type and (expected.index is None or got.index in (None, expected.index))


# ------------------------------------------------------------------------------- checks


def check(
    prop: str,
    cand: torch.Tensor,
    base: torch.Tensor,
    gold: torch.Tensor,
    *,
    dtype: torch.dtype,
    reduction: int,
    case: object,
    what: str = "output",
    device: str | torch.device | None = None,
    perturbed: torch.Tensor | None = None,
    unit_terms: bool | None = None,
    score_gain: float = 0.0,
) -> None:
    """Assert the rule for one tensor (an output or a gradient) and explain a failure.

    ``cand`` must be in ``dtype`` and, when ``device`` is given, on that device (type and index
    when the index is given). ``perturbed``: gold on perturbed inputs (`perturb`), when the
    property can compute it. ``unit_terms``: whether the floor's magnitude is clamped at sqrt(n)
    (default: when there is no perturbed gold); properties whose scores mix the inputs with
    unit-size terms the implementation computes itself (coordinate channels, hybrid
    coordinates), which no input perturbation moves, keep the clamp. ``score_gain``: what a
    relative rounding of the scores costs the output per unit of its magnitude (`floor`)."""
    if not isinstance(cand, torch.Tensor):
        raise AssertionError(describe(prop, case, f"{what}: not a tensor but {type(cand).__name__}", [], kind="shape"))
    if cand.dtype != dtype:
        raise AssertionError(
            describe(prop, case, f"{what}: dtype {_name(cand.dtype)} != expected {_name(dtype)}", [], kind="dtype")
        )
    if device is not None and not _same_device(cand.device, torch.device(device)):
        raise AssertionError(describe(prop, case, f"{what}: on device {cand.device} != expected {device}", [], kind="device"))
    cand64, base64, gold64 = _as_gold(cand), _as_gold(base), _as_gold(gold)
    if cand64.shape != gold64.shape:
        raise AssertionError(
            describe(prop, case, f"{what}: shape {tuple(cand64.shape)} != expected {tuple(gold64.shape)}", [], kind="shape")
        )
    bad_nan = torch.isnan(cand64) & ~torch.isnan(gold64)
    if bool(bad_nan.any()):
        idx = tuple(int(i) for i in bad_nan.nonzero()[0])
        raise AssertionError(
            describe(
                prop,
                case,
                f"{what}: NaN where gold is finite",
                [f"first at index {idx}, gold={float(gold64[idx]):.6g}", f"{int(bad_nan.sum())} NaN elements"],
                kind="nan",
            )
        )
    finite = torch.isfinite(gold64)
    err = (cand64 - gold64).abs().masked_fill(~finite, 0.0).nan_to_num(0.0, posinf=math.inf)
    base_err = (base64 - gold64).abs().masked_fill(~finite, 0.0).nan_to_num(0.0, posinf=math.inf)
    base_max = float(base_err.max()) if base_err.numel() else 0.0
    perturbed_max = 0.0
    if perturbed is not None:
        p_err = (_as_gold(perturbed) - gold64).abs().masked_fill(~finite, 0.0).nan_to_num(0.0, posinf=math.inf)
        perturbed_max = float(p_err.max()) if p_err.numel() else 0.0
    mismatch_inf = ~finite & ~torch.isnan(gold64) & (cand64 != gold64)
    cand_max = float(err.max()) if err.numel() else 0.0
    if bool(mismatch_inf.any()):
        cand_max = math.inf
        err = err.masked_fill(mismatch_inf, math.inf)
    reference_error = max(base_max, perturbed_max)
    clamp = perturbed is None if unit_terms is None else unit_terms
    fl = floor(gold64.masked_fill(~finite, 0.0), dtype, reduction, unit_terms=clamp, score_gain=score_gain)
    limit = BASE_FACTOR * reference_error + fl
    if cand_max <= limit:
        _measure(cand_max, reference_error, limit, dtype)
        return
    flat = int(err.argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape))
    lines = [
        f"cand error {cand_max:.3e} > bound {limit:.3e} = {BASE_FACTOR:g} * base error {reference_error:.3e} + floor {fl:.3e}"
        f" (dtype {_name(dtype)}, reduction {reduction}" + (f", score gain {score_gain:.3g})" if score_gain else ")"),
        f"base error = max(baseline {base_max:.3e}, gold on inputs perturbed by {PERTURB_ULPS:g} ulps of {_name(dtype)} "
        + (f"{perturbed_max:.3e})" if perturbed is not None else "not computed)"),
        f"worst element at index {idx}: cand={float(cand64[idx]):.8g} gold={float(gold64[idx]):.8g} base={float(base64[idx]):.8g}",
        f"{int((err > limit).sum())} of {err.numel()} elements beyond the bound",
    ]
    raise AssertionError(describe(prop, case, f"{what} differs from gold", lines))


def check_gradients(
    prop: str,
    cand: Mapping[str, torch.Tensor | None],
    base: Mapping[str, torch.Tensor | None],
    gold: Mapping[str, torch.Tensor | None],
    *,
    dtype: torch.dtype,
    reductions: Mapping[str, int],
    case: object,
    device: str | torch.device | None = None,
    perturbed: Mapping[str, torch.Tensor | None] | None = None,
    unit_terms: bool = True,
    score_gain: float = 0.0,
) -> None:
    """`check` on every gradient by name (``grad x``, ``grad weight``, ...); each name must have
    its reduction length in ``reductions``. The floor's magnitude stays clamped by default:
    a backward pass reuses rounded intermediates (a softmax's output) whose error cancels against
    unit-size terms, which no perturbation of the inputs measures."""
    for name, g in gold.items():
        if g is None:
            if cand.get(name) is not None:
                raise AssertionError(describe(prop, case, f"grad {name} exists but gold has none", [], kind="shape"))
            continue
        c, b = cand.get(name), base.get(name)
        if c is None:
            raise AssertionError(describe(prop, case, f"grad {name} is None but gold has one", [], kind="shape"))
        if name not in reductions:
            raise KeyError(f"{prop}: no reduction length for grad {name}")
        assert b is not None
        p = None if perturbed is None else perturbed.get(name)
        check(
            prop, c, b, g, dtype=dtype, reduction=reductions[name], case=case, what=f"grad {name}", device=device,
            perturbed=p, unit_terms=unit_terms, score_gain=score_gain,
        )


def check_exact(prop: str, a: torch.Tensor, b: torch.Tensor, *, case: object, what: str, kind: str = "mismatch") -> None:
    """Bitwise equality (gathers, replays); ``kind`` says what a difference means."""
    if a.shape == b.shape and bool(torch.equal(a, b)):
        return
    if a.shape != b.shape:
        raise AssertionError(describe(prop, case, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ", [], kind="shape"))
    diff = (a.double() - b.double()).abs().nan_to_num(float("inf"))
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    raise AssertionError(
        describe(prop, case, f"{what}: not bitwise equal", [f"worst at {idx}: {float(a[idx])!r} vs {float(b[idx])!r}"], kind=kind)
    )


def check_selection(
    prop: str,
    cand_index: torch.Tensor,
    cand_score: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    *,
    case: object,
    atol: float,
) -> None:
    """Selections as sets plus scores, tie-tolerant.

    cand_index, cand_score ``(..., Nq, k)``; scores ``(..., Nq, M)`` all candidates' gold
    scores. The selected scores, sorted, must equal the k largest gold scores (within ``atol``);
    the index *sets* must agree on rows whose k-th and (k+1)-th gold scores differ by > ``atol``
    (`clear_rows`): any choice among tied candidates is a correct one.
    """
    gold_top, gold_idx = scores.topk(k, dim=-1)
    picked = scores.gather(-1, cand_index.to(scores.device).long())
    got = picked.sort(dim=-1, descending=True).values
    reported = cand_score.detach().double().cpu().sort(dim=-1, descending=True).values
    worst = 0.0
    for label, value in (("scores of the selected candidates", got), ("reported scores", reported)):
        diff = (value - gold_top).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        if float(diff.max()) > atol:
            idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
            raise AssertionError(
                describe(
                    prop,
                    case,
                    f"{label} are not the top-{k}",
                    [f"at {idx}: {float(value[idx]):.8g} vs top-k {float(gold_top[idx]):.8g} (atol {atol:.2e})"],
                    kind="selection",
                )
            )
    clear = clear_rows(scores, k, atol)
    same = cand_index.long().sort(dim=-1).values.cpu() == gold_idx.sort(dim=-1).values.cpu()
    wrong = clear.cpu() & ~same.all(dim=-1)
    if bool(wrong.any()):
        row = tuple(int(i) for i in wrong.nonzero()[0])
        raise AssertionError(
            describe(
                prop,
                case,
                "selected set differs from the top-k on an unambiguous row",
                [f"row {row}: cand {sorted(cand_index[row].tolist())} vs gold {sorted(gold_idx[row].tolist())}"],
                kind="selection",
            )
        )
    _measure(worst, 0.0, atol)
