"""Plant each mutant in a scratch copy of the repository and run the equivalence suite on it.

The copy holds the files git tracks (and untracked, not ignored ones); the suite runs there with
the current interpreter, so the copy's ``convnn_ref`` shadows the installed one (``python -m
pytest`` puts the current directory first on ``sys.path``; the runner checks which one it got).
A mutant of a file the equivalence suite does not read (the report, the sweep's journal) names
the tests that guard it (``Mutant.tests``); they run instead. One pytest process per mutant, ``-x`` (the first failing property kills it), a time limit per
mutant (a hang counts as killed: the suite's own per-case limit would catch it).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from suites.mutation import report
from suites.mutation.catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
#: What runs against every mutant: the whole equivalence suite, the broadest and quickest files
#: first (with ``-x`` a mutant dies at its first failing property), then the same properties with
#: the selection engine forced (the equivalence inputs are too small for its fused search).
_EQUIVALENCE_FILES = tuple(
    f"suites/equivalence/{name}.py"
    for name in (
        "test_oracle",
        "test_routes",
        "test_convolution",
        "test_attention",
        "test_kvt",
        "test_invariants",
        "test_gradients",
        "test_padded_features",
        "test_position_table",
        "test_traps",
        "test_validation",
        "test_hostile_input",
        "test_inert_knobs",
        "test_torch_claims",
        "test_blocks",
        "test_requires_grad",
        "test_dropout",
        "test_half_precision",
        "test_arguments",
        "test_neighborhood",  # last: it reads only the window rule's code, and its FlexAttention cases are the slowest
    )
)
#: The benchmark stopwatch's decision logic (intervals, verdicts, threads), a few seconds.
DEFAULT_TESTS = (*_EQUIVALENCE_FILES, "suites/test_engine.py", "suites/bench/test_stopwatch.py")


@dataclass
class Outcome:
    """What happened to one mutant."""

    id: str
    what: str
    status: str  # killed | survived | timeout | not-applied
    killed_by: str | None
    seconds: float
    equivalent: str | None = None


def repository_files(root: Path) -> list[str]:
    """Files git tracks, plus untracked files it does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True
    )
    return [line for line in out.stdout.splitlines() if line and (root / line).is_file()]


def scratch_copy(root: Path, into: Path) -> Path:
    """Copy the repository's files into ``into`` (a fresh directory)."""
    for rel in repository_files(root):
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return into


def plant(copy: Path, mutant: Mutant) -> str:
    """Apply ``mutant`` to the copy; returns the original text of the file (to restore it)."""
    path = copy / mutant.file
    text = path.read_text(encoding="utf-8")
    found = text.count(mutant.find)
    if found != mutant.count:
        raise ValueError(f"mutant {mutant.id}: {mutant.file} holds its text {found} times, expected {mutant.count}")
    path.write_text(text.replace(mutant.find, mutant.replace), encoding="utf-8")
    return text


def run_suite(copy: Path, tests: Sequence[str], timeout: float) -> tuple[str, str | None]:
    """``(status, first failing test)`` of the suite in ``copy``."""
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONPATH": str(copy)}
    cmd = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "--benchmark-disable", "-rf", "--no-header"]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", None
    failed = next((line.split(" ", 2)[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))), None)
    if proc.returncode == 0:
        return "survived", None
    return "killed", failed or f"pytest exit {proc.returncode}"


def which_package(copy: Path) -> str:
    """Where ``convnn_ref`` is imported from when the suite runs in ``copy``."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run(
        [sys.executable, "-c", "import convnn_ref, pathlib; print(pathlib.Path(convnn_ref.__file__).resolve())"],
        cwd=copy, env=env, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def run(mutants: Sequence[Mutant], tests: Sequence[str] | None, timeout: float, echo=print) -> list[Outcome]:  # type: ignore[no-untyped-def]
    """Plant each mutant in turn and run ``tests`` (None: each mutant's own ``tests``, else
    `DEFAULT_TESTS`) against it."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="convnn-mutants-") as tmp:
        copy = scratch_copy(ROOT, Path(tmp))
        package = which_package(copy)
        if not package.startswith(str(copy.resolve())):
            raise RuntimeError(f"the scratch copy's convnn_ref is shadowed by {package}")
        for mutant in mutants:
            started = time.monotonic()
            try:
                original = plant(copy, mutant)
            except ValueError as exc:
                outcomes.append(Outcome(mutant.id, mutant.what, "not-applied", str(exc), 0.0, mutant.equivalent))
                echo(f"{mutant.id:<32} not applied: {exc}")
                continue
            try:
                status, by = run_suite(copy, tests or mutant.tests or DEFAULT_TESTS, timeout)
            finally:
                (copy / mutant.file).write_text(original, encoding="utf-8")
            seconds = time.monotonic() - started
            outcomes.append(Outcome(mutant.id, mutant.what, status, by, round(seconds, 1), mutant.equivalent))
            echo(f"{mutant.id:<32} {status:<9} {seconds:6.1f}s  {by or ''}")
    return outcomes


def select(mutants: Sequence[Mutant], only: Sequence[str] | None, match: Sequence[str] | None) -> list[Mutant]:
    """The mutants named by ``only`` (ids) or matching a glob of ``match``; all without either."""
    if not only and not match:
        return list(mutants)
    return [m for m in mutants if m.id in (only or ()) or any(fnmatch.fnmatchcase(m.id, g) for g in match or ())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.mutation", description=__doc__)
    parser.add_argument("--only", action="append", default=None, help="run only this mutant id (repeatable)")
    parser.add_argument("--match", action="append", default=None, help="run only mutants whose id matches this glob, e.g. 'dropout-*' (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("reports/mutants"), help="output directory (default: %(default)s)")
    parser.add_argument("--tests", action="append", default=None, help=f"pytest paths (default: {' '.join(DEFAULT_TESTS)})")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:<32} {m.file}: {m.what}")
        return 0
    chosen = select(MUTANTS, args.only, args.match)
    unknown = set(args.only or ()) - {m.id for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant ids: {sorted(unknown)}")
    unmatched = [g for g in args.match or () if not any(fnmatch.fnmatchcase(m.id, g) for m in MUTANTS)]
    if unmatched:
        parser.error(f"no mutant id matches {unmatched}")
    started = time.time()
    outcomes = run(chosen, tuple(args.tests) if args.tests else None, args.timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    own = sorted({t for m in chosen if not args.tests for t in m.tests})
    doc = {"started": started, "wall_s": round(time.time() - started, 1), "tests": list(args.tests or [*DEFAULT_TESTS, *own]),
           "mutants": [asdict(o) for o in outcomes]}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (args.out / "summary.md").write_text(report.markdown(doc), encoding="utf-8")
    print(f"mutants: {report.headline(doc)} -> {args.out / 'summary.md'}")
    unexplained = [o for o in outcomes if o.status == "survived" and not o.equivalent]
    return 1 if unexplained or any(o.status == "not-applied" for o in outcomes) else 0
