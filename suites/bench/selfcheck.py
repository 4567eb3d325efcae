"""Self-check of the stopwatch: do the bars' verdicts survive a busy host?

    python -m suites.bench.selfcheck [--preset default] [--out reports/bench-check] [--quick]

Times every pair a time bar with a target is read from (the ConvNN case and its baseline,
`presets.partners`) in interleaved pairs (`paired`), three times in this one process on the
same inputs and thread count:

1. ``quiet``: as the host is (its load is measured and said: a shared host is never quiet);
2. ``all-but-one``: with a busy-loop process pinned to every core but one;
3. ``all``: with one pinned to every core.

Each phase decides every bar with the report's own rule (`reports.tables.bar_verdict`). The
check passes when no verdict flips between met and not met against the quiet phase; turning
inconclusive is allowed, and counted. The busy processes are children of this process, each
stops by itself at a deadline and when this process is gone, and every one is killed when a
phase ends, also on errors and Ctrl-C. Writes ``selfcheck.json`` and ``selfcheck.md``; exit 0
(no flip), 1 (a flip), 2 (nothing to check).

The thread count is held fixed across phases (default 1): a ratio depends on the thread count
itself, so only verdicts taken at one count can be compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.tables import bar_verdict, markdown_table
from suites.bench import host, measure, paired
from suites.bench.cases import Case, build
from suites.bench.machine import commit_info, machine_info
from suites.bench.presets import Bar, Preset, get_preset, partners

#: Phases: name and how many cores get a busy process (-1: every core but one; 0: none).
PHASES = (("quiet", 0), ("all-but-one", -1), ("all", None))
#: Verdicts that decide a bar: a flip between them fails the check.
DECIDED = ("met", "not met")

#: The busy loop each load process runs: pinned to its core, spinning until its deadline or
#: until its parent is gone.
BUSY_LOOP = """
import os, sys, time
core, deadline, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
try:
    os.sched_setaffinity(0, {core})
except (AttributeError, OSError):
    pass
x = 0
while time.time() < deadline and os.getppid() == parent:
    for _ in range(100000):
        x += 1
"""


@dataclass(frozen=True)
class BarPair:
    """One comparison a bar is read from: the bar, the ConvNN case and its baseline case."""

    bar: Bar
    convnn: Case
    baseline: Case

    @property
    def label(self) -> str:
        return f"{self.bar.name} @ {self.convnn.side}²"


def bar_pairs(preset: Preset, device: str, *, with_target_only: bool = True) -> list[BarPair]:
    """Every (bar, ConvNN case, baseline case) the preset's time bars are read from."""
    cases = preset.cases(device)
    out = []
    for bar in preset.bars:
        if bar.metric != "time" or (with_target_only and bar.target is None):
            continue
        for case in cases:
            if case.implementation != "reference" or case.mode != bar.mode or case.direction != bar.direction:
                continue
            if (case.B, case.C, case.dtype) != (bar.B, bar.C, bar.dtype):
                continue
            if (case.k != bar.k) if bar.k is not None else (case.k != case.N):
                continue
            if bar.sides is not None and case.side not in bar.sides:
                continue
            for name, other in partners(case, cases):
                if name == bar.baseline:
                    out.append(BarPair(bar, case, other))
    return out


class BusyLoad:
    """Busy-loop processes pinned to ``cores`` for at most ``limit_s`` seconds; a context
    manager that always stops them."""

    def __init__(self, cores: list[int], limit_s: float) -> None:
        self.cores = cores
        self.limit_s = limit_s
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyLoad:
        deadline = time.time() + self.limit_s
        for core in self.cores:
            cmd = [sys.executable, "-c", BUSY_LOOP, str(core), f"{deadline:.3f}", str(os.getpid())]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        time.sleep(0.5 if self.cores else 0.0)  # let them reach their cores
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def alive(self) -> int:
        return sum(proc.poll() is None for proc in self.procs)


def load_cores(phase_cores: int | None, available: list[int]) -> list[int]:
    """The cores a phase loads: none (0), every one but the first (-1), or every one (None)."""
    if phase_cores == 0:
        return []
    if phase_cores == -1:
        return available[1:]
    return list(available)


def compare(quiet: dict[str, str], loaded: dict[str, str]) -> tuple[list[str], list[str]]:
    """Labels whose verdict flipped between met and not met, and those that turned
    inconclusive, from the quiet phase's verdicts to a loaded phase's."""
    flips, turned = [], []
    for label, before in quiet.items():
        after = loaded.get(label)
        if after is None:
            continue
        if before in DECIDED and after in DECIDED and before != after:
            flips.append(label)
        elif before in DECIDED and after == "inconclusive":
            turned.append(label)
    return flips, turned


def run_phase(name: str, pairs: list[BarPair], works: dict[str, Any], plan: paired.PairPlan, device: str,
              busy_cores: list[int], limit_s: float, clock: str) -> dict[str, Any]:
    """Every pair under one load; each with its record and verdict."""
    results = []
    print(f"selfcheck: phase {name}: {len(busy_cores)} busy process(es) on cores {busy_cores}", flush=True)
    with BusyLoad(busy_cores, limit_s) as load:
        start = host.snapshot()
        for pair in pairs:
            record = paired.measure_pairs(works[pair.convnn.id], works[pair.baseline.id], plan,
                                          sync=lambda: measure.synchronize(device), clock=clock)
            verdict, reason = bar_verdict("time", record["median"], record["low"], record["high"], record["n"],
                                          pair.bar.target, record["others_cores"])
            results.append({"label": pair.label, "bar": pair.bar.name, "side": pair.convnn.side,
                            "convnn": pair.convnn.id, "baseline": pair.baseline.id, "target": pair.bar.target,
                            "verdict": verdict, "reason": reason, **record})
            print(f"selfcheck: {name:<12} {pair.label:<72} {record['median']:.3f} [{record['low']:.3f}-"
                  f"{record['high']:.3f}] n={record['n']} others={record['others_cores']} -> {verdict}", flush=True)
        end = host.snapshot()
        still = load.alive()
    return {"phase": name, "busy_cores": busy_cores, "busy_alive_at_end": still, "start": start, "end": end,
            **host.between(start, end), "pairs": results}


def markdown(doc: dict[str, Any]) -> str:
    """The self-check's Markdown report."""
    phases = doc["phases"]
    names = [p["phase"] for p in phases]
    lines = [f"<!-- generated by `{doc['command']}`; do not edit -->", "# Stopwatch self-check", "",
             f"Commit {doc['commit']}, {doc['machine']}, {doc['date']}; preset {doc['preset']}, {doc['threads']} CPU "
             f"thread(s) in every phase, clock: {doc['clock']} time, pairs: budget {doc['plan']['budget_s']} s, "
             f"at least {doc['plan']['min_pairs']}. "
             f"Took {doc['wall_s']:.0f} s.", "",
             "Phases: the bar pairs timed as the host is (*quiet*), with a busy process pinned to every core but one "
             "(*all-but-one*) and to every core (*all*). No verdict may flip between met and not met; turning "
             "inconclusive is allowed.", ""]
    for p in phases:
        lines.append(f"- {p['phase']}: busy processes on cores {p['busy_cores']}; other processes used "
                     f"{p.get('others_cores')} cores on average ({p.get('others_cpu_s')} CPU s in {p.get('wall_s')} s); "
                     f"load average {p['start'].get('load_average')} → {p['end'].get('load_average')}.")
    lines += ["", f"**Result: {doc['result']}.** " + "; ".join(
        f"{c['phase']}: {len(c['flips'])} flipped, {len(c['turned_inconclusive'])} turned inconclusive"
        for c in doc["comparisons"]) + ".", ""]
    if doc["quiet_note"]:
        lines += [f"Note: {doc['quiet_note']}", ""]
    rows = []
    by_phase = {p["phase"]: {r["label"]: r for r in p["pairs"]} for p in phases}
    for label in by_phase[names[0]]:
        row: dict[str, Any] = {"bar": label, "target": by_phase[names[0]][label]["target"]}
        for name in names:
            r = by_phase[name].get(label)
            row[name] = "–" if r is None else f"{r['median']:.3g} [{r['low']:.3g}–{r['high']:.3g}] n={r['n']}: {r['verdict']}"
        rows.append(row)
    import pandas as pd

    lines.append(markdown_table(pd.DataFrame(rows), ["bar", "target", *names]))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m suites.bench.selfcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", help="whose bars are checked (default: default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="reports/bench-check", help="folder of selfcheck.json and selfcheck.md")
    p.add_argument("--threads", type=int, default=1, help="CPU threads in every phase (default 1)")
    p.add_argument("--pair-budget-s", type=float, default=None, help="seconds of pairs per bar pair (default: 1.5, --quick: 0.75)")
    p.add_argument("--min-pairs", type=int, default=None, help="pairs at least, however slow (default: 10, --quick: 8)")
    p.add_argument("--quick", action="store_true", help="half the pair budget and fewer pairs")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only bar pairs whose label contains TEXT (repeatable; a partial check, said in the report)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    command = shlex.join(["python", "-m", "suites.bench.selfcheck", *(sys.argv[1:] if argv is None else argv)])
    preset = get_preset(args.preset)
    pairs = bar_pairs(preset, args.device)
    if args.only:
        pairs = [p for p in pairs if any(text in p.label for text in args.only)]
    if not pairs:
        print(f"selfcheck: preset {args.preset} has no time bar with a target to check", file=sys.stderr, flush=True)
        return 2
    host.apply_threads(args.threads)
    plan = paired.PairPlan(budget_s=args.pair_budget_s if args.pair_budget_s is not None else (0.75 if args.quick else 1.5),
                           min_pairs=args.min_pairs if args.min_pairs is not None else (8 if args.quick else 10))
    print(f"selfcheck: {len(pairs)} bar pairs of preset {args.preset}, {args.threads} thread(s), 3 phases", flush=True)
    works = {}
    for case in dict.fromkeys(c for p in pairs for c in (p.convnn, p.baseline)):
        from suites.implementations import load_implementation

        impl = None if case.implementation != "reference" else load_implementation("reference")
        works[case.id] = build(case, impl).run
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(host.cores()))
    limit_s = 1800.0  # no busy process outlives half an hour, whatever happens here
    clock = paired.choose_clock(args.device, args.threads)
    phases = [run_phase(name, pairs, works, plan, args.device, load_cores(n, available), limit_s, clock)
              for name, n in PHASES]
    verdicts = {p["phase"]: {r["label"]: r["verdict"] for r in p["pairs"]} for p in phases}
    comparisons = []
    for p in phases[1:]:
        flips, turned = compare(verdicts["quiet"], verdicts[p["phase"]])
        comparisons.append({"phase": p["phase"], "flips": flips, "turned_inconclusive": turned})
    flipped = any(c["flips"] for c in comparisons)
    quiet_others = phases[0].get("others_cores")
    note = ""
    if host.busy(quiet_others):
        note = (f"the quiet phase was not quiet: other processes used {quiet_others:.2f} cores on average during it; "
                "rerun on an idle host for a true quiet baseline")
    commit = commit_info()
    doc = {
        "generated_by": f"{command}; do not edit",
        "command": command,
        "commit": f"{str(commit.get('id') or 'unknown')[:12]}{' (dirty)' if commit.get('dirty') else ''}",
        "machine": f"{machine_info().get('cpu_model')} ({host.cores()} cores)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "preset": args.preset,
        "threads": args.threads,
        "thread_settings": host.thread_settings(),
        "plan": {"budget_s": plan.budget_s, "min_pairs": plan.min_pairs, "max_pairs": plan.max_pairs},
        "clock": clock,
        "partial": bool(args.only),
        "result": "FAIL: a verdict flipped between met and not met" if flipped else "pass: no verdict flipped",
        "quiet_note": note,
        "comparisons": comparisons,
        "phases": phases,
        "wall_s": time.monotonic() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selfcheck.json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "selfcheck.md").write_text(markdown(doc), encoding="utf-8")
    print(f"selfcheck: {doc['result']}; " + "; ".join(
        f"{c['phase']}: {len(c['flips'])} flipped, {len(c['turned_inconclusive'])} turned inconclusive" for c in comparisons)
        + f"; {out / 'selfcheck.md'} ({doc['wall_s']:.0f} s)", flush=True)
    return 1 if flipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
