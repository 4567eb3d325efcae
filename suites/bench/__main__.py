"""Run a benchmark preset and write one pytest-benchmark JSON file.

    python -m suites.bench --preset default --out results/bench [--device cuda] [--impl NAME]

Runs ``pytest suites/bench/test_bench.py`` on the preset's cases with a journal
(``<out>/<stem>.jsonl``) that every finished case is appended to, then assembles
``<out>/<stem>.json`` (pytest-benchmark's schema: machine_info, commit_info, benchmarks) from
it. A rerun resumes after the journal's last case (``--fresh`` starts over). A case whose
process died under it (segfault, the OOM killer, a hard timeout) is recorded as ``crashed``
and the sweep goes on. With several visible GPUs and ``--device cuda`` the cases are spread over
them by pytest-xdist, one worker per GPU pinned through ``CUDA_VISIBLE_DEVICES`` (the test
timing stays one case per device at a time); CPU sweeps run serially.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suites.bench import journal
from suites.bench.cases import Case
from suites.bench.machine import commit_info, machine_info
from suites.bench.presets import PRESETS, get_preset

HERE = Path(__file__).resolve().parent

#: pytest exit codes that mean the user (or a supervisor) stopped the sweep: SIGINT, SIGTERM,
#: SIGHUP. Cases cut short by them are rerun on resume; any other death marks the case crashed.
USER_STOP = (2, -2, -15, -1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m suites.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--out", default="results/bench", help="folder of the JSON results")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--impl", action="append", default=None, help="implementation(s) timed as ConvNN (default: reference)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs to spread over (default: all visible, CUDA sweeps only)")
    p.add_argument("--case-timeout", type=float, default=900.0, help="hard per-case limit in seconds (pytest-timeout)")
    p.add_argument("--retry", action="append", choices=("crashed", "error", "oom", "time_limit", "wrong"),
                   help="on resume, rerun cases whose recorded status is this (repeatable)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no new case after this many seconds (the rest stay for a rerun)")
    p.add_argument("--fresh", action="store_true", help="discard this preset's journal and start over")
    p.add_argument("--assemble-only", action="store_true", help="only write the JSON from the journal")
    p.add_argument("--list", action="store_true", help="print the preset's cases and exit")
    return p.parse_args(argv)


def result_stem(preset: str, device: str) -> str:
    """File stem of one host's sweep: preset, host name and device."""
    host = platform.node().split(".")[0] or "host"
    return f"{preset}-{host}-{device}"


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pytest_command(args: argparse.Namespace, device: str, journal_path: Path, gpus: int) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and environment for one pass over the remaining cases."""
    cmd = [
        sys.executable, "-m", "pytest", str(HERE / "test_bench.py"),
        "-p", "no:cacheprovider", "-q", "-rN", "--tb=line",
        f"--bench-preset={args.preset}", f"--bench-device={device}", f"--bench-journal={journal_path}",
        "--bench-resume", "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name",
    ]
    if _installed("pytest_timeout"):  # optional: the hard per-case limit
        cmd.append(f"--timeout={args.case_timeout:g}")
    cmd += [f"--bench-retry={status}" for status in args.retry or ()]
    for spec in args.impl or []:
        cmd.append(f"--impl={spec}")
    env = dict(os.environ)
    if args.deadline is not None:
        env["CONVNN_BENCH_DEADLINE"] = f"{args.deadline:.3f}"
    if gpus > 1 and not _installed("xdist"):
        print("convnn bench: several GPUs but pytest-xdist is not installed; running on one GPU", flush=True)
        gpus = 1
    if gpus > 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        cmd += ["--dist=load"] + [f"--tx=popen//env:CUDA_VISIBLE_DEVICES={i}" for i in ids[:gpus]]
        env["CONVNN_BENCH_PINNED"] = "1"
    else:
        cmd += ["-v"]  # one progress line per case
    return cmd, env


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def crashed_row(case_id: str, cases: dict[str, Case]) -> dict[str, Any]:
    """The row of a case whose process died before it could write one."""
    case = cases.get(case_id)
    info: dict[str, Any] = dict(case.fields()) if case else {}
    info.update(status="crashed", message="the process died during this case (segfault, OOM killer or hard timeout)")
    return {"group": info.get("mode"), "name": f"test_bench[{case_id}]", "fullname": "", "params": {"case": case_id},
            "param": case_id, "extra_info": info, "options": {}, "stats": None}


def sweep(args: argparse.Namespace, device: str, journal_path: Path) -> None:
    """Run pytest until every case has a row (or no pass makes progress)."""
    preset = get_preset(args.preset)
    cases = {c.id: c for c in preset.cases(device, _impl_names(args))}
    retry = tuple(args.retry or ())
    gpus = args.gpus if args.gpus is not None else (gpu_count() if device.startswith("cuda") else 1)
    while True:
        before = journal.read_all(journal_path)
        remaining = set(cases) - journal.done_ids(before, retry)
        if not remaining:
            return
        print(f"convnn bench: {args.preset} on {device}: {len(remaining)} of {len(cases)} cases to run", flush=True)
        cmd, env = pytest_command(args, device, journal_path, gpus)
        rc = subprocess.call(cmd, env=env)
        if rc in USER_STOP:
            print(f"convnn bench: stopped (exit {rc}); rerun the same command to resume", flush=True)
            return
        after = journal.read_all(journal_path)
        lost = (journal.started_ids(after) - journal.done_ids(after, retry)) & remaining
        for case_id in sorted(lost):
            journal.append(journal_path, {"type": "row", "row": crashed_row(case_id, cases)})
        progress = len(journal.done_ids(journal.read_all(journal_path), retry) & remaining)
        if args.deadline is not None and time.time() > args.deadline:
            print(f"convnn bench: time budget spent; {len(remaining) - progress} cases left for a rerun", flush=True)
            return
        if rc in (3, 4) or progress == 0:  # internal or usage error, or stuck
            print(f"convnn bench: pytest exited with {rc}; {len(remaining) - progress} cases left for a rerun", flush=True)
            return


def _impl_names(args: argparse.Namespace) -> tuple[str, ...]:
    from suites.implementations import load_implementation

    return tuple(load_implementation(s).name for s in (args.impl or ["reference"]))


def assemble(journal_path: Path, out_path: Path, preset: str, case_ids: set[str]) -> int:
    """Write the pytest-benchmark JSON of the journal's rows of ``case_ids`` (the preset's
    current cases); returns the row count."""
    records = journal.read_all(journal_path)
    rows = [r for r in journal.rows(records) if r["param"] in case_ids]
    doc = {
        "machine_info": machine_info(),
        "commit_info": commit_info(),
        "benchmarks": rows,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "version": _pytest_benchmark_version(),
        "convnn_bench": {"preset": preset, "peaks": [{"device": d, "dtype": t, "gflops": g} for (d, t), g in journal.peaks(records).items()]},
    }
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    tmp.replace(out_path)
    return len(rows)


def _pytest_benchmark_version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = get_preset(args.preset)
    device = args.device or ("cuda" if gpu_count() > 0 else "cpu")
    if args.list:
        for case in preset.cases(device, _impl_names(args)):
            print(case.id)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(args.preset, device)
    journal_path = out / f"{stem}.jsonl"
    if args.fresh:
        for path in [journal_path, *out.glob(journal_path.name + ".gw*")]:
            path.unlink(missing_ok=True)
    args.deadline = time.time() + args.budget_s if args.budget_s else None
    if not args.assemble_only:
        sweep(args, device, journal_path)
    case_ids = {c.id for c in preset.cases(device, _impl_names(args))}
    n = assemble(journal_path, out / f"{stem}.json", args.preset, case_ids)
    print(f"convnn bench: {n} rows in {out / (stem + '.json')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
