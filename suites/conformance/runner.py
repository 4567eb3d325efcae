"""Runs the equivalence properties on one implementation in a pytest subprocess, survives its
crashes and hangs, and resumes.

One implementation, one output directory ``<out>/<name>/`` holding ``results.jsonl`` (the log,
`records.py`) and ``pytest.log`` (the subprocess' output). The loop:

1. start ``pytest <paths> --impl SPEC -p suites.conformance.plugin --conformance-log ...
   --conformance-resume --timeout T --timeout-method signal`` in its own process group;
2. watch the log: a test that has run for longer than the hard limit (the per-case limit plus a
   grace period: a hang in native code that no signal interrupts) gets its process group killed
   and a ``timeout`` record;
3. when the process dies with a test started but not finished (a segfault, an abort, an
   ``os._exit``), record that test as ``crashed`` with the end of the process' output, and go to 1:
   the plugin deselects every test that already has a result;
4. a normal exit writes ``complete``. Running the same command again resumes an interrupted run
   and only rebuilds the reports of a complete one; ``fresh=True`` starts over.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from suites.conformance import failures, records

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATHS = ("suites/equivalence",)
PLUGIN = "suites.conformance.plugin"
SUITE_PLUGIN = "suites.pytest_plugin"
#: pytest exit codes of a run that went to its end (all passed, some failed, none collected).
NORMAL_EXITS = (0, 1, 5)
_OUTPUT_TAIL = 3_000
#: How faulthandler (on in pytest) starts its report of a fatal signal.
FATAL_ERROR_TEXT = "Fatal Python error"


@dataclass(frozen=True)
class RunSettings:
    """What a run of the properties is; a resumed run must have the same settings."""

    paths: tuple[str, ...] = DEFAULT_PATHS
    keyword: str | None = None
    hypothesis_profile: str = "ci"
    timeout: float = 300.0
    explain: bool = False
    pytest_args: tuple[str, ...] = ()
    #: Search each failed property again per knob value (`search_modes`).
    modes: bool = True
    #: At most this many failed properties are searched per knob value.
    max_mode_searches: int = 12

    @property
    def hard_limit(self) -> float:
        """Seconds after which the runner kills a case pytest-timeout could not stop."""
        return self.timeout + max(10.0, 0.5 * self.timeout)


@dataclass
class Outcome:
    """What one implementation's run left behind."""

    spec: str
    name: str
    directory: Path
    state: records.LogState
    restarts: int = 0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class SettingsMismatch(RuntimeError):
    """The log on disk was made with other settings; resuming would mix two runs."""


class Interrupted(RuntimeError):
    """The caller asked the run to stop (``stop`` was set); the log is kept for a resume."""


def implementation_name(spec: str) -> str:
    """The directory name of an implementation: its ``name`` attribute when that can be read
    without instantiating it (a built-in, a class, an instance), else the spec made filename-safe.
    This imports the spec's module in the runner's process; nothing of it runs here."""
    from suites.implementations import BUILTINS, ENTRY_POINT_GROUP

    obj: object | None = BUILTINS.get(spec)
    try:
        if obj is None and ":" in spec:
            module_name, _, attr = spec.partition(":")
            if os.getcwd() not in sys.path:  # the run imports from the caller's directory too
                sys.path.append(os.getcwd())
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        elif obj is None:
            obj = next((ep.load() for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec), None)
    except (ImportError, AttributeError):
        obj = None  # the subprocess will report why it does not load
    name = getattr(obj, "name", None) if obj is not None else None
    if not isinstance(name, str) or not name or name == "unnamed":
        name = spec.rpartition(":")[2] or spec
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "implementation"


def pytest_command(spec: str, log: Path, settings: RunSettings) -> list[str]:
    """The pytest command line of one session."""
    cmd = [sys.executable, "-m", "pytest", *(resolve_path(p) for p in settings.paths), "--impl", spec]
    cmd += ["-p", SUITE_PLUGIN, "-p", PLUGIN, "--conformance-log", str(log), "--conformance-resume"]
    cmd += ["--timeout", f"{settings.timeout:g}", "--timeout-method", "signal"]
    if not settings.explain:
        cmd.append("--conformance-no-explain")
    cmd += ["-p", "no:cacheprovider", "-q", "--no-header", "-rN"]
    if settings.keyword:
        cmd += ["-k", settings.keyword]
    return cmd + list(settings.pytest_args)


def resolve_path(path: str) -> str:
    """A property path as given when it exists from the current directory, else under the
    directory holding the suites package (the run starts in the caller's directory, so that
    replay lines and relative adapter modules work from there)."""
    if Path(path.partition("::")[0]).exists():
        return path
    candidate = ROOT / path
    return str(candidate) if Path(str(candidate).partition("::")[0]).exists() else path


def child_env(settings: RunSettings) -> dict[str, str]:
    """The environment of the subprocess: the project and the caller's directory importable (for
    ``module:object`` specs), the Hypothesis profile set."""
    env = dict(os.environ)
    paths = [str(ROOT), os.getcwd(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["HYPOTHESIS_PROFILE"] = settings.hypothesis_profile
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def run_implementation(
    spec: str,
    out: Path,
    settings: RunSettings,
    *,
    name: str | None = None,
    fresh: bool = False,
    max_restarts: int = 200,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> Outcome:
    """Run (or resume) the properties on ``spec``; the log lands in ``out/<name>/results.jsonl``."""
    started = time.monotonic()
    name = name or implementation_name(spec)
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    log, output = directory / "results.jsonl", directory / "pytest.log"
    if fresh:
        for path in (log, output):
            path.unlink(missing_ok=True)
    wanted = {"spec": spec, **asdict(settings)}
    state = records.summarize(records.read(log))
    if state.runner:
        before = {k: state.runner[-1].get(k) for k in wanted}
        if _normalise(before) != _normalise(wanted):
            raise SettingsMismatch(
                f"{log} was made with other settings ({_diff(before, wanted)}); rerun with --fresh to start over"
            )
    outcome = Outcome(spec=spec, name=name, directory=directory, state=state)
    if state.complete and not state.remaining() and not state.errors:
        echo(f"[{name}] complete in {log}: reports rebuilt, nothing rerun (use --fresh to start over)")
        return outcome
    records.append(log, {"event": "runner", **wanted})
    while True:
        session = _Session(spec, log, output, settings, echo, name, stop or threading.Event())
        rc = session.run()
        state = records.summarize(records.read(log))
        if session.killed_nodeid is not None:
            outcome.restarts += 1
        elif state.unfinished:
            nodeid = state.unfinished[-1]
            replay = failures.replay_line(nodeid, [spec], settings.hypothesis_profile, pythonpath=child_env(settings)["PYTHONPATH"])
            records.append(log, _crash_record(nodeid, rc, session.output_tail(), replay))
            left = [n for n in state.remaining() if n != nodeid]
            echo(f"[{name}] crashed   {nodeid}: {describe_exit(rc)}" + ("; resuming" if left else ""))
            if not left:
                records.append(log, {"event": "complete", "returncode": rc})
                break
            outcome.restarts += 1
        elif rc in NORMAL_EXITS or (state.collected and not state.remaining()):
            # every test has its result, even if the process then died on its way out
            records.append(log, {"event": "complete", "returncode": rc})
            break
        else:
            records.append(log, {"event": "run-error", "returncode": rc, "output": session.output_tail()})
            echo(f"[{name}] pytest could not run ({describe_exit(rc)}); see {output}")
            break
        if outcome.restarts > max_restarts:
            outcome.notes.append(f"stopped after {max_restarts} restarts")
            records.append(log, {"event": "run-error", "returncode": rc, "output": f"stopped after {max_restarts} restarts"})
            break
    outcome.state = records.summarize(records.read(log))
    if settings.modes and not stop_requested(stop):
        search_modes(spec, directory, settings, outcome.state, echo=echo, name=name)
    outcome.state = records.summarize(records.read(log))
    outcome.wall_s = time.monotonic() - started
    return outcome


def stop_requested(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


#: Knobs a failing property is searched again for, one value at a time (`suites.strategies` pins).
MODE_KNOBS: dict[str, tuple[str, ...]] = {
    "basis": ("position", "feature", "hybrid"),
    "similarity": ("cosine", "euclidean", "dot", "scaled_dot"),
    "dtype": ("float64", "float32", "float16", "bfloat16"),
}


def search_modes(
    spec: str,
    directory: Path,
    settings: RunSettings,
    state: records.LogState,
    *,
    echo: Callable[[str], None] = print,
    name: str = "",
) -> None:
    """Rerun each failed property once per value of each knob it draws (``CONVNN_PIN``), so that
    one failure mode cannot hide another: every mode gets its own shrunk counterexample. A knob
    whose first pinned run never drew it is not searched further. The findings land in the main
    log as one ``modes`` record per property; the runs' own logs in ``modes.jsonl``."""
    failed = [n for n, rec in state.finished.items() if rec.get("status") == "failed" and rec.get("examples")]
    done = {rec["nodeid"] for rec in records.read(directory / "results.jsonl") if rec.get("event") == "modes"}
    for nodeid in [n for n in failed if n not in done][: settings.max_mode_searches]:
        found: list[records.Record] = []
        for knob, values in MODE_KNOBS.items():
            for i, value in enumerate(values):
                rec = _pinned_run(spec, directory, settings, nodeid, f"{knob}={value}")
                if rec is None or (i == 0 and not rec.get("pin_consulted")):
                    break  # the property does not draw this knob (or could not run)
                found.append({"pin": f"{knob}={value}", **{k: rec.get(k) for k in ("status", "kind", "max_error", "case", "replay")}})
        records.append(directory / "results.jsonl", {"event": "modes", "nodeid": nodeid, "modes": found})
        failing = [m["pin"] for m in found if m["status"] == "failed"]
        echo(f"[{name}] modes     {nodeid}: fails with {', '.join(failing) or 'no single pinned knob'}")


def _pinned_run(spec: str, directory: Path, settings: RunSettings, nodeid: str, pin: str) -> records.Record | None:
    """One pytest run of ``nodeid`` with ``CONVNN_PIN=pin``; its finish record, or None."""
    log = directory / "modes.jsonl"
    paths = {resolve_path(p) for p in settings.paths}
    cmd = pytest_command(spec, log, dataclasses.replace(settings, keyword=None))
    cmd = [c for c in cmd if c not in paths and c != "--conformance-resume"] + [resolve_path(nodeid)]
    env = {**child_env(settings), "CONVNN_PIN": pin}
    before = len(records.read(log))
    try:
        subprocess.run(cmd, cwd=os.getcwd(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=settings.hard_limit)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "pin_consulted": True}
    finishes = [r for r in records.read(log)[before:] if r.get("event") == "finish"]
    return finishes[-1] if finishes else None


def _record(raw: bytes) -> records.Record | None:
    """One line of the log as a usable record, or None (garbage, not an object, refused)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) and records.record_problem(rec) is None else None


class _Session:
    """One pytest subprocess, watched."""

    def __init__(
        self,
        spec: str,
        log: Path,
        output: Path,
        settings: RunSettings,
        echo: Callable[[str], None],
        name: str,
        stop: threading.Event,
    ) -> None:
        self.spec, self.log, self.output, self.settings, self.echo, self.name = spec, log, output, settings, echo, name
        self.stop = stop
        self.killed_nodeid: str | None = None
        self._offset = output.stat().st_size if output.exists() else 0

    def run(self) -> int:
        cmd = pytest_command(self.spec, self.log, self.settings)
        with open(self.output, "ab") as sink:
            sink.write(f"\n$ {' '.join(cmd)}\n".encode())
            sink.flush()
            proc = subprocess.Popen(
                cmd, cwd=os.getcwd(), env=child_env(self.settings), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                return self._watch(proc)
            except BaseException:
                _kill_group(proc)
                raise

    def _watch(self, proc: subprocess.Popen[bytes]) -> int:
        position = self.log.stat().st_size if self.log.exists() else 0
        current: tuple[str, float] | None = None
        while True:
            rc = proc.poll()
            for rec in self._new_records(position):
                position = rec.pop("_end")
                if rec.get("event") == "start":
                    current = (rec["nodeid"], time.monotonic())
                elif rec.get("event") == "finish":
                    current = None
                    self.echo(_progress_line(self.name, rec))
            if rc is not None:
                return rc
            if self.stop.is_set():
                _kill_group(proc)
                raise Interrupted(f"{self.name}: stopped; rerun the same command to resume")
            if current is not None and time.monotonic() - current[1] > self.settings.hard_limit:
                _kill_group(proc)
                self.killed_nodeid = current[0]
                records.append(
                    self.log,
                    {
                        "event": "finish",
                        "nodeid": current[0],
                        "status": "timeout",
                        "reason": f"no result after {self.settings.hard_limit:g}s; pytest-timeout could not interrupt "
                        "the case (native code?), so the runner killed the process",
                        "message": self.output_tail(),
                        "replay": failures.replay_line(
                            current[0], [self.spec], self.settings.hypothesis_profile, pythonpath=child_env(self.settings)["PYTHONPATH"]
                        ),
                    },
                )
                self.echo(f"[{self.name}] timeout   {current[0]} (killed after {self.settings.hard_limit:g}s); resuming")
                return proc.wait()
            time.sleep(0.1)

    def _new_records(self, position: int) -> list[records.Record]:
        if not self.log.exists():
            return []
        out = []
        with open(self.log, "rb") as fh:
            fh.seek(position)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                position += len(raw)
                rec = _record(raw)
                if rec is None:  # not a usable record: the report names it (records.read_checked)
                    continue
                rec["_end"] = position
                out.append(rec)
        return out

    def output_tail(self) -> str:
        """The end of this session's pytest output: after a crash, from faulthandler's
        ``Fatal Python error`` line on."""
        with open(self.output, "rb") as fh:
            fh.seek(self._offset)
            text = fh.read().decode(errors="replace")
        start = text.rfind(FATAL_ERROR_TEXT)
        if start < 0:
            start = max(0, len(text) - _OUTPUT_TAIL)
        return text[start : start + 2 * _OUTPUT_TAIL]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def describe_exit(rc: int) -> str:
    """``rc`` in words: a signal's name for a negative code."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _crash_record(nodeid: str, rc: int, tail: str, replay: str) -> records.Record:
    return {
        "event": "finish",
        "nodeid": nodeid,
        "status": "crashed",
        "reason": f"the test process died during this test ({describe_exit(rc)})",
        "returncode": rc,
        "message": tail,
        "replay": replay,
    }


def _progress_line(name: str, rec: records.Record) -> str:
    status = rec.get("status", "?")
    detail = ""
    if status == "skipped":
        detail = f": {rec.get('reason', '')}"
    elif status in records.BAD_STATUSES:
        first = (rec.get("message") or rec.get("reason") or "").strip().split("\n", 1)[0]
        detail = f": {first[:160]}"
    return f"[{name}] {status:<9} {rec['nodeid']}{detail}"


def _normalise(d: dict[str, object]) -> dict[str, object]:
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()}


def _diff(before: dict[str, object], wanted: dict[str, object]) -> str:
    a, b = _normalise(before), _normalise(wanted)
    return ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in b if a.get(k) != b[k])
