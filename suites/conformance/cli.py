"""Command line: ``python -m suites.conformance --impl SPEC [--impl SPEC ...] [options] [-- PYTEST ARGS]``.

Exit status: 0 when every implementation passes every applicable property (error-convention
findings included), 1 when some test did not pass (failed, error, timeout, crashed), 3 when the
properties could not be run at all (2 is left to argparse's usage errors, and to make, which
exits 2 whenever a recipe fails).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from suites.conformance import records, report, runner

#: Exit status when the properties could not be run (the implementation does not load, a log
#: made with other settings, ...).
COULD_NOT_RUN = 3


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m suites.conformance",
        description="Run the equivalence properties on implementations under test and write conformance reports.",
        epilog="Arguments after -- go to pytest unchanged. Docs: docs/testing-your-implementation.md",
    )
    parser.add_argument(
        "--impl",
        action="append",
        default=None,
        help="a built-in (reference, torch-ops), an installed entry point of the group "
        "convnn_ref.implementations, or module:object; repeat to compare (default: $IMPL)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/conformance"), help="output directory (default: %(default)s)")
    parser.add_argument(
        "--properties",
        action="append",
        default=None,
        help=f"pytest paths of the properties, repeatable (default: {' '.join(runner.DEFAULT_PATHS)})",
    )
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression selecting properties")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-case time limit in seconds (default: %(default)s)")
    parser.add_argument(
        "--hypothesis-profile",
        default=os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        help="dev, ci or nightly (default: $HYPOTHESIS_PROFILE or ci)",
    )
    parser.add_argument("--fresh", action="store_true", help="discard earlier results instead of resuming")
    parser.add_argument(
        "--explain", action="store_true", help="keep Hypothesis' explain phase (slower failures, extra explanation lines)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="implementations run side by side (default: %(default)s)")
    parser.add_argument(
        "--no-modes",
        action="store_true",
        help="do not search failed properties again per value of basis, similarity and dtype",
    )
    args = parser.parse_args(argv)
    if not args.impl:
        if not os.environ.get("IMPL"):
            parser.error("name an implementation with --impl (or set IMPL)")
        args.impl = os.environ["IMPL"].split()
    args.pytest_args = extra
    return args


def unique_names(specs: Sequence[str]) -> list[str]:
    """One output directory name per spec; a repeated name gets ``-2``, ``-3``, ..."""
    names: list[str] = []
    for spec in specs:
        base = runner.implementation_name(spec)
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = runner.RunSettings(
        paths=tuple(args.properties or runner.DEFAULT_PATHS),
        keyword=args.keyword,
        hypothesis_profile=args.hypothesis_profile,
        timeout=args.timeout,
        explain=args.explain,
        pytest_args=tuple(args.pytest_args),
        modes=not args.no_modes,
    )
    names = unique_names(args.impl)
    stop = threading.Event()

    def one(spec: str, name: str) -> report.ImplReport:
        outcome = runner.run_implementation(spec, args.out, settings, name=name, fresh=args.fresh, stop=stop)
        rep = report.write_reports(outcome.directory)
        for entry in rep.skipped:
            print(f"[{name}] skipped {entry}", file=sys.stderr, flush=True)
        c = report.counts(rep.rows)
        tally = ", ".join(f"{n} {s}" for s in records.STATUSES if (n := c[s])) or "no tests"
        print(f"[{name}] {tally} in {outcome.wall_s:.1f}s -> {outcome.directory / 'summary.md'}", flush=True)
        return rep

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(one, spec, name) for spec, name in zip(args.impl, names)]
        try:
            reports = [f.result() for f in futures]
        except KeyboardInterrupt:
            stop.set()
            print("interrupted: rerun the same command to resume", file=sys.stderr)
            return 130
        except (runner.SettingsMismatch, runner.Interrupted) as exc:
            stop.set()
            print(f"error: {exc}", file=sys.stderr)
            return COULD_NOT_RUN
    if len(reports) > 1:
        path = args.out / "comparison.md"
        path.write_text(report.comparison_markdown(reports), encoding="utf-8")
        print(f"comparison -> {path}")
    if any(r.errors for r in reports):
        return COULD_NOT_RUN
    return 1 if any(report.counts(r.rows)[s] for r in reports for s in records.BAD_STATUSES) else 0
