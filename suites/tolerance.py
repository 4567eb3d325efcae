"""The error model of the equivalence suite (SPEC §4) and its failure messages.

Rule, for an output and for every gradient:

    max|cand - gold|  <=  BASE_FACTOR * max|base - gold|  +  floor

- gold: the computation in float64 on the test-dtype inputs promoted to float64;
- base: the trusted operator (``F.conv*d``, SDPA, ``nn.MultiheadAttention``; where PyTorch has
  none, the naive oracle) in the test dtype;
- cand: the implementation under test in the test dtype;
- floor: ``eps(dtype) * (FLOOR_ULPS + sqrt(reduction)) * max(max|gold|, 1)``: a few units in
  the last place at the output's magnitude plus a term growing with the reduction length k·C
  (summation error of a random-order sum), at that magnitude too.

A failure names the property, the case (config and seed), the worst element (index, cand, gold,
base), both errors and the bound, and one command that replays it. An output (or gradient) in
another dtype or on another device than expected fails too.

Passing checks are measured: inside `measuring()`, the check closest to its bound (largest
``max_error / bound``) over all of a test's examples is kept, so that the runner can report
``max_error``, ``base_error`` and ``bound`` of passing properties (conftest records them with
pytest's ``record_property`` mechanism).
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

BASE_FACTOR = 2.0
#: Units in the last place at the output's magnitude, whatever the reduction: one rounding per
#: operation on the way (a scale folded into another factor, a softmax's exp and divide, ...).
FLOOR_ULPS = 8.0
#: Growth with the reduction length n: the error of an n-term sum in some other order grows like
#: sqrt(n) ulps for random-signed terms; the factor covers orders that are not random (a pairwise
#: tree against a sequential loop, blocked products).
SUM_GROWTH = 2.0

_replay_options: list[str] = []


def set_replay_options(options: Sequence[str]) -> None:
    """Extra pytest options the replay line must carry (``--impl`` specs); set by conftest."""
    _replay_options[:] = list(options)


@dataclass
class Measurement:
    """The worst passing check of a test so far (by ``max_error / bound``)."""

    max_error: float = 0.0
    base_error: float = 0.0
    bound: float = math.inf
    checks: int = 0

    def add(self, max_error: float, base_error: float, bound: float) -> None:
        self.checks += 1
        if self.checks == 1 or _ratio(max_error, bound) > _ratio(self.max_error, self.bound):
            self.max_error, self.base_error, self.bound = max_error, base_error, bound

    def properties(self) -> list[tuple[str, float]]:
        """``(name, value)`` pairs for ``record_property``; empty when nothing was checked."""
        if not self.checks:
            return []
        return [("max_error", self.max_error), ("base_error", self.base_error), ("bound", self.bound)]


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


def _measure(max_error: float, base_error: float, bound: float) -> None:
    m = _measurement.get()
    if m is not None:
        m.add(max_error, base_error, bound)


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of ``dtype``."""
    return torch.finfo(dtype).eps


def floor(gold: torch.Tensor, dtype: torch.dtype, reduction: int) -> float:
    """The absolute error no implementation can be asked to beat (see the module docstring):
    ``eps(dtype) * (FLOOR_ULPS + SUM_GROWTH * sqrt(reduction)) * max(max|gold|, 1)``."""
    finite = gold[torch.isfinite(gold)] if gold.numel() else gold
    mag = float(finite.abs().max()) if finite.numel() else 0.0
    return eps(dtype) * (FLOOR_ULPS + SUM_GROWTH * math.sqrt(max(reduction, 1))) * max(mag, 1.0)


def bound(base_error: float, gold: torch.Tensor, dtype: torch.dtype, reduction: int) -> float:
    """The largest ``max|cand - gold|`` a correct implementation may show:
    ``BASE_FACTOR * base_error + floor(gold, dtype, reduction)``. The suite's checks and the
    benchmark's verdict both use it."""
    return BASE_FACTOR * base_error + floor(gold, dtype, reduction)


def replay_command() -> str:
    """One shell line that reruns the current test under the current profile (derandomized under
    ``ci``: the same examples, the same shrunk failure)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "<test id>").rsplit(" (", 1)[0]
    profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    extra = " ".join(shlex.quote(o) for o in _replay_options)
    line = f"HYPOTHESIS_PROFILE={profile} PYTHONPATH=. python -m pytest {shlex.quote(current)} -p no:cacheprovider"
    line = f"{line} {extra}".rstrip()
    if profile != "ci":
        line += "  # not derandomized: add the @reproduce_failure blob printed above, or use HYPOTHESIS_PROFILE=ci"
    return line


def describe(prop: str, case: object, what: str, lines: Sequence[str]) -> str:
    """A failure message: property, what failed, details, the case and the replay line."""
    body = "\n".join(f"  {line}" for line in lines)
    return f"[{prop}] {what}\n{body}\n  case: {case!r}\n  replay: {replay_command()}"


def _as_gold(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


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
) -> None:
    """Assert SPEC §4's rule for one tensor (an output or a gradient) and explain a failure.

    ``cand`` must be in ``dtype`` and, when ``device`` is given, on that device (type and index
    when the index is given)."""
    if cand.dtype != dtype:
        raise AssertionError(
            describe(prop, case, f"{what}: dtype {_name(cand.dtype)} != expected {_name(dtype)}", [])
        )
    if device is not None and not _same_device(cand.device, torch.device(device)):
        raise AssertionError(describe(prop, case, f"{what}: on device {cand.device} != expected {device}", []))
    cand64, base64, gold64 = _as_gold(cand), _as_gold(base), _as_gold(gold)
    if cand64.shape != gold64.shape:
        raise AssertionError(
            describe(prop, case, f"{what}: shape {tuple(cand64.shape)} != expected {tuple(gold64.shape)}", [])
        )
    bad_nan = torch.isnan(cand64) & ~torch.isnan(gold64)
    if bool(bad_nan.any()):
        idx = tuple(int(i) for i in bad_nan.nonzero()[0])
        raise AssertionError(
            describe(
                prop,
                case,
                f"{what}: NaN where gold is finite",
                [f"first at index {idx}, gold={float(gold64[idx]):.6g}"],
            )
        )
    finite = torch.isfinite(gold64)
    err = (cand64 - gold64).abs().masked_fill(~finite, 0.0).nan_to_num(0.0)
    base_err = (base64 - gold64).abs().masked_fill(~finite, 0.0).nan_to_num(0.0)
    cand_max = float(err.max()) if err.numel() else 0.0
    base_max = float(base_err.max()) if base_err.numel() else 0.0
    fl = floor(gold64.masked_fill(~finite, 0.0), dtype, reduction)
    bound = BASE_FACTOR * base_max + fl
    if cand_max <= bound:
        _measure(cand_max, base_max, bound)
        return
    flat = int(err.argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape))
    lines = [
        f"cand error {cand_max:.3e} > bound {bound:.3e} = {BASE_FACTOR:g} * base error {base_max:.3e} + floor {fl:.3e}"
        f" (dtype {str(dtype).replace('torch.', '')}, reduction {reduction})",
        f"worst element at index {idx}: cand={float(cand64[idx]):.8g} gold={float(gold64[idx]):.8g} base={float(base64[idx]):.8g}",
    ]
    raise AssertionError(describe(prop, case, f"{what} differs from gold", lines))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _same_device(got: torch.device, expected: torch.device) -> bool:
    return got.type == expected.type and (expected.index is None or got.index in (None, expected.index))


def check_gradients(
    prop: str,
    cand: dict[str, torch.Tensor | None],
    base: dict[str, torch.Tensor | None],
    gold: dict[str, torch.Tensor | None],
    *,
    dtype: torch.dtype,
    reductions: dict[str, int],
    case: object,
    device: str | torch.device | None = None,
) -> None:
    """`check` on every gradient by name (``grad x``, ``grad weight``, ...)."""
    for name, g in gold.items():
        if g is None:
            continue
        c, b = cand[name], base[name]
        if c is None:
            raise AssertionError(describe(prop, case, f"grad {name} is None but gold has one", []))
        assert b is not None
        check(
            prop, c, b, g, dtype=dtype, reduction=reductions.get(name, 1), case=case, what=f"grad {name}", device=device
        )


def check_exact(prop: str, a: torch.Tensor, b: torch.Tensor, *, case: object, what: str) -> None:
    """Bitwise equality (determinism, gathers)."""
    if a.shape == b.shape and bool(torch.equal(a, b)):
        return
    if a.shape != b.shape:
        raise AssertionError(describe(prop, case, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ", []))
    diff = (a.double() - b.double()).abs().nan_to_num(float("inf"))
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    raise AssertionError(
        describe(prop, case, f"{what}: not bitwise equal", [f"worst at {idx}: {float(a[idx])!r} vs {float(b[idx])!r}"])
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
    """Selections as sets plus scores, tie-tolerant (SPEC §3.4).

    cand_index, cand_score ``(..., Nq, k)``; scores ``(..., Nq, M)`` all candidates' gold
    scores. The selected scores, sorted, must equal the k largest gold scores (within ``atol``);
    the index *sets* must agree on rows whose k-th and (k+1)-th gold scores differ by > ``atol``.
    """
    gold_top, gold_idx = scores.topk(k, dim=-1)
    picked = scores.gather(-1, cand_index.to(scores.device).long())
    got = picked.sort(dim=-1, descending=True).values
    reported = cand_score.double().sort(dim=-1, descending=True).values
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
                )
            )
    if k < scores.shape[-1]:
        ordered = scores.sort(dim=-1, descending=True).values
        clear = (ordered[..., k - 1] - ordered[..., k]) > atol
    else:
        clear = torch.ones(scores.shape[:-1], dtype=torch.bool)
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
            )
        )
    _measure(worst, 0.0, atol)
