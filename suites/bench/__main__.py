"""Run a benchmark preset and write one pytest-benchmark JSON file.

    python -m suites.bench --preset default --out results/bench [--device cuda] [--impl NAME]

Runs ``pytest suites/bench/test_bench.py`` on the preset's cases with a journal
(``<out>/<stem>.jsonl``) that every finished case is appended to, then assembles
``<out>/<stem>.json`` (pytest-benchmark's schema: machine_info, commit_info, benchmarks, plus a
``convnn_bench`` section with the preset's baselines and bars) from it. A rerun resumes after
the journal's last case (``--fresh`` starts over). A case whose process died under it
(segfault, the OOM killer, a hard timeout) is recorded as ``crashed`` and the sweep goes on.
With several visible GPUs and ``--device cuda`` the cases are spread over them by
pytest-xdist, one worker per GPU pinned through ``CUDA_VISIBLE_DEVICES`` (the test timing stays
one case per device at a time); CPU sweeps run serially.

One sweep per journal: the runner holds ``<journal>.lock`` (``flock``) for the whole run and a
second one on the same journal is refused, naming the PID that holds it; a lock left by a dead
process never blocks. The pytest child dies with the runner, even when the runner is killed
with SIGKILL (`lifeline`); SIGINT, SIGTERM and SIGHUP stop both cleanly.

``--annotate FILE`` adds the preset's baselines and bars (and ``--note`` texts) to a results
file written before the sweep recorded them, saying so in the file; its rows are not touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from reports.untrusted import read_json_object
from suites import jsonl
from suites.bench import host, journal, lifeline
from suites.bench.cases import Case, unsupported
from suites.bench.machine import commit_info, machine_info
from suites.bench.presets import PRESETS, definitions, get_preset

HERE = Path(__file__).resolve().parent

#: pytest exit codes that mean the user (or a supervisor) stopped the sweep: SIGINT, SIGTERM,
#: SIGHUP. Cases cut short by them are rerun on resume; any other death marks the case crashed.
USER_STOP = (2, -2, -15, -1)
#: Exit code of a sweep refused because another one holds the journal (EX_TEMPFAIL).
LOCKED = 75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m suites.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--out", default="results/bench", help="folder of the JSON results")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--impl", action="append", default=None, help="implementation(s) timed as ConvNN (default: reference)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs to spread over (default: all visible, CUDA sweeps only)")
    p.add_argument("--case-timeout", type=float, default=900.0, help="hard per-case limit in seconds (pytest-timeout)")
    p.add_argument("--threads", type=_threads, default=1,
                   help="CPU threads of the timed process (torch, OpenMP, MKL and faiss pools). Default 1: no OpenMP "
                        "thread can wait at a barrier for a core another job holds, and the count (which a ratio depends "
                        "on) does not follow the load. 'auto': the cores other processes left idle at the start (1 on a "
                        "busy host)")
    p.add_argument("--retry", action="append", choices=("crashed", "error", "oom", "time_limit", "wrong"),
                   help="on resume, rerun cases whose recorded status is this (repeatable)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no new case after this many seconds (the rest stay for a rerun)")
    p.add_argument("--fresh", action="store_true", help="discard this preset's journal and start over")
    p.add_argument("--assemble-only", action="store_true", help="only write the JSON from the journal")
    p.add_argument("--list", action="store_true", help="print the preset's cases and exit")
    p.add_argument("--annotate", metavar="FILE", help="add the preset's baselines and bars to a results file that lacks them")
    p.add_argument("--note", action="append", default=[], metavar="[FIELD=VALUE,...:]TEXT",
                   help="with --annotate: a note for the report, on the rows matching the fields (repeatable)")
    return p.parse_args(argv)


def _threads(text: str) -> int | str:
    """``--threads``: 'auto' or a positive count."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads must be 'auto' or a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads must be at least 1, not {value}")
    return value


def choose_threads(requested: int | str, default: bool) -> tuple[int, str]:
    """The thread count the sweep runs with and why: ``requested``, or for 'auto' the idle
    cores seen over half a second (`host.choose_threads`); a count above the idle cores is
    said with the warning."""
    n_cores = host.cores()
    others = host.sample_others(0.5)
    seen = "unknown (no /proc)" if others is None else f"other processes used {others:.2f} of {n_cores} cores at the start"
    if requested == "auto":
        return host.choose_threads(n_cores, others), f"--threads auto: {seen}"
    threads = int(requested)
    why = ("the default: one thread never waits for a busy core, and a ratio's thread count does not follow the load"
           if default else "--threads")
    if threads > host.choose_threads(n_cores, others):
        return threads, f"{why}; WARNING: more than the idle cores ({seen}): OpenMP threads may wait at barriers, use --threads 1"
    return threads, f"{why}; {seen}"


def result_stem(preset: str, device: str) -> str:
    """File stem of one host's sweep: preset, host name and device."""
    host = platform.node().split(".")[0] or "host"
    return f"{preset}-{host}-{device}"


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def command_line(argv: list[str] | None) -> str:
    """This invocation as one shell line (``python -m suites.bench ...``)."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "suites.bench", *args])


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
    env[lifeline.PARENT_ENV] = str(os.getpid())
    env[journal.RUN_ENV] = args.run
    if isinstance(args.threads, int):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = env[host.THREADS_ENV] = str(args.threads)
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


def run_pytest(cmd: list[str], env: dict[str, str], lock: jsonl.FileLock) -> tuple[int, int | None]:
    """Run one pytest pass as a child that dies with this process and shares its lock; signals
    to this process stop the child cleanly. Returns pytest's exit code (negative: killed by a
    signal) and the first signal this process received meanwhile (None: none)."""
    assert lock.fd is not None
    env = {**env, journal.LOCK_FD_ENV: str(lock.fd)}
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, pass_fds=(lock.fd,),
                            preexec_fn=lifeline.child_setup(os.getpid()))
    lock.update(child=proc.pid)
    with lifeline.forward_signals(proc) as received:
        rc = lifeline.wait(proc, received)
    lock.update(child=None)
    return rc, (received[0][0] if received else None)


def sweep(args: argparse.Namespace, device: str, journal_path: Path, lock: jsonl.FileLock, cases: dict[str, Case]) -> int | None:
    """Run pytest until every case has a row (or no pass makes progress). Returns the signal
    that stopped the sweep, if one did."""
    retry = tuple(args.retry or ())
    gpus = args.gpus if args.gpus is not None else (gpu_count() if device.startswith("cuda") else 1)
    while True:
        before = journal.read_all(journal_path)
        remaining = set(cases) - journal.done_ids(before, retry)
        if not remaining:
            return None
        print(f"convnn bench: {args.preset} on {device}: {len(remaining)} of {len(cases)} cases to run", flush=True)
        cmd, env = pytest_command(args, device, journal_path, gpus)
        rc, stopped_by = run_pytest(cmd, env, lock)
        if stopped_by is not None or rc in USER_STOP:
            print(f"convnn bench: stopped (pytest exit {rc}); rerun the same command to resume", flush=True)
            return stopped_by or signal.SIGINT
        after = journal.read_all(journal_path)
        lost = (journal.started_ids(after, args.run) - journal.done_ids(after, retry)) & remaining
        for case_id in sorted(lost):
            journal.append(journal_path, {"type": "row", "row": crashed_row(case_id, cases)})
        progress = len(journal.done_ids(journal.read_all(journal_path), retry) & remaining)
        if args.deadline is not None and time.time() > args.deadline:
            print(f"convnn bench: time budget spent; {len(remaining) - progress} cases left for a rerun", flush=True)
            return None
        if rc in (3, 4) or progress == 0:  # internal or usage error, or stuck
            print(f"convnn bench: pytest exited with {rc}; {len(remaining) - progress} cases left for a rerun", flush=True)
            return None


def _impls(args: argparse.Namespace) -> dict[str, Any]:
    from suites.implementations import load_implementation

    loaded = (load_implementation(s) for s in (args.impl or ["reference"]))
    return {impl.name: impl for impl in loaded}


def header(preset_name: str, cases: list[Case], command: str) -> dict[str, Any]:
    """The results file's header: machine and commit info, and the ``convnn_bench`` section
    (preset, command, baselines, bars)."""
    preset = get_preset(preset_name)
    return {
        "machine_info": machine_info(),
        "commit_info": commit_info(),
        "convnn_bench": {"preset": preset_name, "command": command, **definitions(preset, cases)},
    }


def write_results(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON, its first line naming the command that wrote it; atomically."""
    first = {"generated_by": doc.pop("generated_by")}
    text = json.dumps({**first, **doc}, indent=1, default=str)
    text = "{" + text[1:].lstrip("\n ")  # '{"generated_by": ...' on line one
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


def assemble(journal_path: Path, out_path: Path, preset: str, cases: list[Case], command: str) -> int:
    """Write the pytest-benchmark JSON of the journal's rows of ``cases`` (the preset's current
    cases); returns the row count. Lines of the journal that cannot be used are named on stderr
    and left out (`journal.read_all_checked`); every good row is kept."""
    records, skipped = journal.read_all_checked(journal_path)
    for entry in skipped:
        print(f"convnn bench: skipped {entry}", file=sys.stderr, flush=True)
    ids = {c.id for c in cases}
    rows = [r for r in journal.rows(records) if r["param"] in ids]
    head = header(preset, cases, command)
    head["convnn_bench"]["peaks"] = [{"device": d, "dtype": t, "gflops": g} for (d, t), g in journal.peaks(records).items()]
    head["convnn_bench"]["host"] = host_summary(records)
    if skipped:
        head["convnn_bench"]["skipped_journal_lines"] = [str(entry) for entry in skipped]
    doc = {
        "generated_by": f"{command} (assembled from {journal_path.name}); do not edit",
        "machine_info": head["machine_info"],
        "commit_info": head["commit_info"],
        "benchmarks": rows,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "version": _pytest_benchmark_version(),
        "convnn_bench": head["convnn_bench"],
    }
    write_results(out_path, doc)
    return len(rows)


def meta_needed(records: list[dict[str, Any]], meta: dict[str, Any], anything_to_run: bool) -> bool:
    """Whether a run appends its ``meta`` record: when the journal has none, or when the run has
    cases to run and its header differs from the last one recorded (the run id aside). A rerun
    that only assembles, or resumes with the same header, appends nothing: reruns never pile
    ``meta`` records up."""
    metas = [r for r in records if r.get("type") == "meta"]
    if not metas:
        return True
    if not anything_to_run:
        return False
    same = json.loads(json.dumps(meta, default=str))
    return {k: v for k, v in metas[-1].items() if k != "run"} != {k: v for k, v in same.items() if k != "run"}


def _pytest_benchmark_version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")


def parse_note(text: str) -> dict[str, Any]:
    """``"implementation=dense-naive,dtype=float32: text"`` -> ``{"where": {...}, "text": ...}``
    (no ``FIELD=VALUE`` part: a note on the whole file)."""
    head, sep, body = text.partition(":")
    if sep and head and all("=" in part for part in head.split(",")):
        where = dict(part.strip().split("=", 1) for part in head.split(","))
        return {"where": where, "text": body.strip()}
    return {"where": {}, "text": text.strip()}


class BadResultsFile(ValueError):
    """A results file that cannot be annotated (unreadable, not a JSON object, or a section of
    the wrong type); the message names the file and what is wrong."""


def annotate(path: Path, preset_name: str, notes: list[str], command: str) -> None:
    """Add the preset's baselines and bars, and ``notes``, to the results file ``path``, with
    what added them; rows and measurements stay as they are. `BadResultsFile` when ``path`` is
    not a results file this can add to (nothing is written then)."""
    doc, problem = read_json_object(path, label=str(path))
    if problem is not None or doc is None:
        raise BadResultsFile(f"cannot annotate {problem}")
    benchmarks = doc.get("benchmarks", [])
    section = doc.setdefault("convnn_bench", {})
    for key, value, kind in (("benchmarks", benchmarks, list), ("convnn_bench", section, dict),
                             ("convnn_bench.notes", section.get("notes", []) if isinstance(section, dict) else [], list)):
        if not isinstance(value, kind):
            raise BadResultsFile(f"cannot annotate {path}: its {key!r} is not a JSON {'array' if kind is list else 'object'}")
    preset = get_preset(preset_name)
    ids = {str(b.get("param")) for b in benchmarks if isinstance(b, dict)}
    cases = [c for c in preset.cases(preset.device) if c.id in ids] or preset.cases(preset.device)
    section.update(definitions(preset, cases))
    commit = commit_info().get("id") or "unknown"
    section["annotated"] = {
        "by": command, "commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "what": f"baselines and bars of preset {preset_name!r} as defined at commit {commit[:12]}, added after the run;"
                " the rows are as the sweep wrote them",
    }
    section["notes"] = [*section.get("notes", []), *(parse_note(n) for n in notes)]
    previous = doc.pop("generated_by", None) or "an earlier version of python -m suites.bench"
    write_results(path, {"generated_by": f"{previous}; annotated by {command}", **doc})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(argv)
    preset = get_preset(args.preset)
    if args.annotate:
        plain = shlex.join(["python", "-m", "suites.bench", "--preset", args.preset, "--annotate", args.annotate])
        try:
            annotate(Path(args.annotate), args.preset, args.note, plain + (f" (+{len(args.note)} --note)" if args.note else ""))
        except BadResultsFile as exc:
            print(f"convnn bench: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"convnn bench: added the baselines and bars of preset {args.preset} to {args.annotate}", flush=True)
        return 0
    device = args.device or ("cuda" if gpu_count() > 0 else "cpu")
    impls = _impls(args)
    case_list = preset.cases(device, tuple(impls))
    if args.list:
        for case in case_list:
            print(case.id)
        return 0
    declined = {c.id: r for c in case_list if (r := unsupported(c, impls.get(c.implementation))) is not None}
    if declined:
        print(f"convnn bench: {len(declined)} cases not supported by their implementation, left out:", flush=True)
        for case_id, reason in sorted(declined.items()):
            print(f"  {case_id}: {reason}", flush=True)
        case_list = [c for c in case_list if c.id not in declined]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(args.preset, device)
    journal_path = out / f"{stem}.jsonl"
    json_path = out / f"{stem}.json"
    if args.assemble_only:
        try:
            jsonl.FileLock(journal.lock_path(journal_path)).acquire(command=command).release()
        except jsonl.LockHeld as held:
            print(f"convnn bench: note: {journal.refusal(journal_path, held.holder).split(';')[0]}; "
                  "the JSON holds the rows written so far", flush=True)
        return _report_rows(assemble(journal_path, json_path, args.preset, case_list, command), case_list, json_path)
    if device.startswith("cuda") and gpu_count() == 0:
        print("convnn bench: --device cuda but no CUDA device is visible", file=sys.stderr, flush=True)
        return 2
    try:
        lock = jsonl.FileLock(journal.lock_path(journal_path)).acquire(command=command, journal=str(journal_path))
    except jsonl.LockHeld as held:
        print(f"convnn bench: {journal.refusal(journal_path, held.holder)}", file=sys.stderr, flush=True)
        return LOCKED
    with lock:
        if args.fresh:
            for path in [journal_path, *out.glob(journal_path.name + ".gw*")]:
                path.unlink(missing_ok=True)
        args.deadline = time.time() + args.budget_s if args.budget_s else None
        args.run = uuid.uuid4().hex[:12]
        given = sys.argv[1:] if argv is None else argv
        args.threads, why = choose_threads(args.threads, default=not any(a.startswith("--threads") for a in given))
        host.apply_threads(args.threads)  # the header's thread settings are then the child's
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)  # as the child gets them
        print(f"convnn bench: {args.threads} CPU thread(s) ({why})", flush=True)
        gpu = device.startswith("cuda")
        meta = {"type": "meta", "run": args.run, **header(args.preset, case_list, command)}
        before = journal.read_all(journal_path)
        to_run = bool({c.id for c in case_list} - journal.done_ids(before, tuple(args.retry or ())))
        # The host is recorded around runs that time something: a rerun with nothing left to time
        # (as after a failed assemble) leaves the journal as it was.
        if to_run:
            journal.append(journal_path, {"type": "host", "when": "start", "run": args.run, "threads": args.threads,
                                          "threads_why": why, **host.snapshot(with_gpu=gpu)})
        if meta_needed(before, meta, to_run):
            journal.append(journal_path, meta)
        stopped_by = sweep(args, device, journal_path, lock, {c.id: c for c in case_list})
        if to_run:
            journal.append(journal_path, {"type": "host", "when": "end", "run": args.run, **host.snapshot(with_gpu=gpu)})
            _say_host(journal_path, args.run)
        _report_rows(assemble(journal_path, json_path, args.preset, case_list, command), case_list, json_path)
        return 0 if stopped_by is None else 128 + int(stopped_by)


def host_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run of the sweep (a resumed sweep has several): the host at its start and end, the
    threads it used and the CPU time other processes took in between (`host.between`)."""
    runs: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "host" and r.get("run"):
            runs.setdefault(str(r["run"]), {})[str(r.get("when"))] = r
    out = []
    for run, ends in runs.items():
        start, end = ends.get("start"), ends.get("end")
        entry: dict[str, Any] = {"run": run, "start": start, "end": end,
                                 "threads": (start or {}).get("threads"), "threads_why": (start or {}).get("threads_why")}
        if start and end:
            entry.update(host.between(start, end))
            entry["warning"] = host.busy_warning(entry["others_cores"], int(start.get("cores") or 1),
                                                 int(start.get("threads") or 1))
        out.append(entry)
    return out


def _say_host(journal_path: Path, run: str) -> None:
    """Print what other processes took during this run, and the warning when that was much."""
    for entry in host_summary(journal.read_all(journal_path)):
        if entry["run"] == run and entry.get("others_cores") is not None:
            print(f"convnn bench: other processes used {entry['others_cores']:.2f} cores on average during the sweep "
                  f"({entry['others_cpu_s']:.0f} CPU s in {entry['wall_s']:.0f} s)", flush=True)
            if entry.get("warning"):
                print(f"convnn bench: WARNING: {entry['warning']}", flush=True)


def _report_rows(n: int, cases: list[Case], path: Path) -> int:
    left = len(cases) - n
    tail = f"; {left} left for a rerun of the same command" if left else ""
    print(f"convnn bench: {n} rows ({n} of {len(cases)} cases) in {path}{tail}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
