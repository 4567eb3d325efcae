"""pytest plugin of the conformance runner: one JSON line per test as it starts and as it finishes.

Load it with ``-p suites.conformance.plugin --conformance-log PATH``; without the option it does
nothing. With it, only tests that take the ``impl`` fixture run (the others check convnn_ref's own
layers and helpers, whatever ``--impl`` says). ``--conformance-resume`` deselects the tests that
already have a result in the log (the runner's resume after a crash or an interrupted run).

A ``finish`` record holds: ``status`` (passed, failed, error, timeout, convention, skipped,
xfailed, xpassed), ``reason`` (skips, conventions), ``kind`` (failures: see
`failures.failure_kind`), ``failures`` (one entry per distinct failure when Hypothesis found
several: exc_type, kind and the parsed fields of each), ``exc_type``,
``message`` (the exception's text), ``longrepr`` (pytest's report, trimmed), the fields parsed from
the suite's message (`failures.parse_message`: property, max_error, base_error, bound, worst, case,
seed, replay, blob, falsifying), ``examples`` and ``shrinks`` (Hypothesis' statistics),
``duration``, ``property`` (the test id without the implementation's parameter) and ``impl``.
A test may also report numbers itself with ``record_property("max_error", ...)`` (any of
``max_error``, ``base_error``, ``bound``, ``examples``); those win over parsed ones.

The per-case time limit is pytest-timeout's (``--timeout S``); with ``--timeout-method signal``
this plugin raises `CaseTimeout`, a ``BaseException``, so that Hypothesis does not mistake the
interruption for a failing example and shrink it (running the hang again with no timer left).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from suites.conformance import failures, records

#: Keys a test may set with ``record_property`` that the record takes over.
RECORDED_PROPERTIES = ("max_error", "base_error", "bound", "errors_by_dtype", "examples", "pin_consulted")
#: pytest-timeout's own failure text (its ``thread`` method, or ``signal`` outside this plugin).
PYTEST_TIMEOUT_TEXT = "from pytest-timeout"
_LONGREPR_LIMIT = 12_000
_MESSAGE_LIMIT = 4_000


class CaseTimeout(BaseException):
    """The per-case time limit ran out (see the module docstring for why not an ``Exception``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "conformance report (suites.conformance)")
    group.addoption("--conformance-log", default=None, help="append one JSON line per test start and finish to this file")
    group.addoption(
        "--conformance-resume", action="store_true", default=False, help="deselect tests that already have a result in the log"
    )
    group.addoption(
        "--conformance-no-explain",
        action="store_true",
        default=False,
        help="drop Hypothesis' explain phase (seconds per failure, traced; the counterexample is the same)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--conformance-no-explain"):
        _drop_explain_phase()
    path = config.getoption("--conformance-log")
    if path:
        recorder = Recorder(Path(path), resume=bool(config.getoption("--conformance-resume")))
        config.pluginmanager.register(recorder, "conformance-recorder")


#: Set on an item when its time limit fired (whatever exception the interruption turned into).
TIMED_OUT = pytest.StashKey[bool]()
_ARMED = pytest.StashKey[bool]()
#: After the first interruption, interrupt again this often until the case ends (the first one
#: may be swallowed: a signal inside ``compile()`` becomes a SystemError that Hypothesis catches).
REPEAT_S = 1.0


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's ``signal`` method, raising `CaseTimeout`; other methods stay its own."""
    if settings.method != "signal" or not hasattr(signal, "SIGALRM"):
        return None

    def handler(signum: int, frame: object) -> None:
        item.stash[TIMED_OUT] = True
        if item.stash.get(_ARMED, False):
            raise CaseTimeout(f"Timeout (>{settings.timeout:g}s): the case did not finish within the per-case limit")

    def cancel() -> None:
        item.stash[_ARMED] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    item.stash[_ARMED] = True
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout, REPEAT_S)
    return True


def _drop_explain_phase() -> None:
    """Load a copy of the current Hypothesis profile without the explain phase."""
    from hypothesis import Phase, settings

    current = settings.default
    if current is None or Phase.explain not in current.phases:
        return
    name = f"{os.environ.get('HYPOTHESIS_PROFILE', 'default')}-no-explain"
    settings.register_profile(name, parent=current, phases=[p for p in current.phases if p != Phase.explain])
    settings.load_profile(name)


def property_name(item: pytest.Item) -> str:
    """The test id without the implementation's parameter: the row name shared by every impl."""
    nodeid = item.nodeid
    callspec = getattr(item, "callspec", None)
    impl = callspec.params.get("impl") if callspec is not None else None
    if impl is None or "[" not in nodeid:
        return nodeid
    head, _, ids = nodeid.partition("[")
    parts = ids[:-1].split("-")
    name_parts = str(getattr(impl, "name", "")).split("-")
    for start in range(len(parts) - len(name_parts) + 1):
        if parts[start : start + len(name_parts)] == name_parts:
            rest = parts[:start] + parts[start + len(name_parts) :]
            return f"{head}[{'-'.join(rest)}]" if rest else head
    return nodeid


def count_examples(stats: dict[str, Any]) -> tuple[int, int]:
    """(examples run to a verdict in the reuse and generate phases, examples tried while shrinking)."""
    examples = 0
    for phase in ("reuse-phase", "generate-phase", "target-phase"):
        cases = stats.get(phase, {}).get("test-cases", [])
        examples += sum(1 for c in cases if c.get("status") in ("valid", "interesting"))
    shrinks = len(stats.get("shrink-phase", {}).get("test-cases", []))
    return examples, shrinks


class Recorder:
    """Writes the log; registered by `pytest_configure` when ``--conformance-log`` is given."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.resume = resume
        self._reports: dict[str, list[pytest.TestReport]] = {}
        self._exc: dict[tuple[str, str], tuple[str, str]] = {}
        self._groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._stats: dict[str, tuple[int, int]] = {}
        self._items: dict[str, pytest.Item] = {}
        self._timed_out: set[str] = set()
        self._specs: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._specs = list(session.config.getoption("--impl", default=None) or [])
        records.append(
            self.path,
            {
                "event": "session",
                "pid": os.getpid(),
                "argv": sys.argv[1:],
                "hypothesis_profile": os.environ.get("HYPOTHESIS_PROFILE", "dev"),
            },
        )

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        # Only the properties of the implementation under test: tests without the `impl`
        # fixture check convnn_ref's own layers and helpers, whatever --impl says.
        other = [i for i in items if "impl" not in getattr(i, "fixturenames", ())]
        if other:
            config.hook.pytest_deselected(items=other)
            items[:] = [i for i in items if "impl" in getattr(i, "fixturenames", ())]
        impls = sorted({str(getattr(p, "name", p)) for i in items if (p := _impl_of(i)) is not None})
        records.append(
            self.path,
            {
                "event": "collected",
                "nodeids": [i.nodeid for i in items],
                "properties": {i.nodeid: property_name(i) for i in items},
                "impls": impls,
                "without_impl": len(other),
            },
        )
        self._items = {i.nodeid: i for i in items}
        if not self.resume:
            return
        done = set(records.summarize(records.read(self.path)).finished)
        keep = [i for i in items if i.nodeid not in done]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if i.nodeid in done])
            items[:] = keep

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """What the contract's optional ``teardown()`` raised: the ``impl`` fixture (conftest.py)
        calls it once per implementation after its tests and leaves its errors here."""
        from suites.pytest_plugin import TEARDOWN_ERRORS

        for name, error in session.config.stash.get(TEARDOWN_ERRORS, []):
            records.append(self.path, {"event": "teardown-error", "impl": name, "error": error})

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        records.append(self.path, {"event": "start", "nodeid": nodeid})

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            from hypothesis.statistics import collector
        except ImportError:  # pragma: no cover - hypothesis is a dependency of the suite
            yield
            return
        outer = collector.value

        def note(stats: dict[str, Any]) -> None:
            self._stats[item.nodeid] = count_examples(stats)
            if outer is not None:
                outer(stats)

        with collector.with_value(note):  # type: ignore[arg-type]  # typed as DynamicVariable[None]
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        if item.stash.get(TIMED_OUT, False):
            item.stash[_ARMED] = False  # interrupted once: no more interruptions while pytest reports
        yield
        if item.stash.get(TIMED_OUT, False):
            self._timed_out.add(item.nodeid)
        if call.excinfo is not None:
            self._exc[(item.nodeid, call.when)] = (call.excinfo.type.__name__, _trim(str(call.excinfo.value), _MESSAGE_LIMIT))
            leaves = _leaf_exceptions(call.excinfo.value)
            if len(leaves) > 1:
                self._groups[(item.nodeid, call.when)] = [_failure_entry(e) for e in leaves]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        records.append(self.path, self._finish_record(nodeid))
        self._reports.pop(nodeid, None)

    def _finish_record(self, nodeid: str) -> records.Record:
        item = self._items.get(nodeid)
        impl = _impl_of(item) if item is not None else None
        rec: records.Record = {
            "event": "finish",
            "nodeid": nodeid,
            "property": property_name(item) if item is not None else nodeid,
            "impl": None if impl is None else str(getattr(impl, "name", impl)),
            "duration": round(sum(r.duration for r in self._reports.get(nodeid, [])), 4),
        }
        status, phase = "passed", None
        for report in self._reports.get(nodeid, []):
            if report.when == "setup" and report.skipped:
                status, rec["reason"] = "skipped", _skip_reason(report)
            elif report.when == "call" and hasattr(report, "wasxfail") and str(report.wasxfail).startswith(records.CONVENTION_PREFIX):
                status, rec["reason"] = "convention", report.wasxfail
            elif report.when in ("setup", "teardown") and report.failed and status in ("passed", "skipped"):
                status, phase = "error", report
            elif report.when == "call":
                if hasattr(report, "wasxfail"):
                    status, rec["reason"] = ("xfailed" if report.skipped else "xpassed"), report.wasxfail
                elif report.skipped:
                    status, rec["reason"] = "skipped", _skip_reason(report)
                elif report.failed:
                    status, phase = "failed", report
            for key, value in report.user_properties:
                if key in RECORDED_PROPERTIES:
                    rec[key] = value
        if phase is not None:
            exc_type, message = self._exc.get((nodeid, phase.when), ("", ""))
            group = self._groups.pop((nodeid, phase.when), None)
            if group:
                rec["failures"] = group
                # the group's own text says only "found 2 distinct failures": take the first's fields
                message = f"{message}\n\n{group[0]['message']}"
            longrepr = _trim(phase.longreprtext, _LONGREPR_LIMIT)
            rec.update(exc_type=exc_type, message=message, longrepr=longrepr, phase=phase.when)
            for key, value in failures.parse_message(f"{message}\n{longrepr}").items():
                rec.setdefault(key, value)
            if nodeid in self._timed_out or exc_type == CaseTimeout.__name__ or PYTEST_TIMEOUT_TEXT in message:
                status = "timeout"
            elif status == "failed":
                rec["kind"] = failures.failure_kind(exc_type, message)
        if status in ("failed", "error", "timeout") and "replay" not in rec:
            rec["replay"] = failures.replay_line(nodeid, self._specs, os.environ.get("HYPOTHESIS_PROFILE", "dev"))
        if nodeid in self._stats:
            examples, shrinks = self._stats.pop(nodeid)
            rec.setdefault("examples", examples)
            rec["shrinks"] = shrinks
        rec["status"] = status
        return rec


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``."""
    subs = getattr(exc, "exceptions", None)  # BaseExceptionGroup (Python >= 3.11, or the backport)
    if isinstance(subs, (list, tuple)) and subs:
        return [leaf for sub in subs for leaf in _leaf_exceptions(sub)]
    return [exc]


def _failure_entry(exc: BaseException) -> dict[str, Any]:
    """One of several distinct failures: its type, kind, message (with Hypothesis' notes: the
    falsifying example) and the suite's fields parsed from it."""
    notes = "\n".join(getattr(exc, "__notes__", []) or [])
    message = _trim(f"{exc}\n{notes}".strip(), _MESSAGE_LIMIT)
    entry: dict[str, Any] = {"exc_type": type(exc).__name__, "message": message}
    entry.update(failures.parse_message(message))
    entry["kind"] = failures.failure_kind(type(exc).__name__, str(exc))
    return entry


def _impl_of(item: pytest.Item) -> object | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("impl")


def _skip_reason(report: pytest.TestReport) -> str:
    """The skip's reason: its first line (Hypothesis appends the explicit example it skipped on)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ").split("\n", 1)[0]


def _trim(text: str, limit: int) -> str:
    """At most ``limit`` characters, keeping the head and the tail (Hypothesis prints its
    falsifying example and replay blob at the end)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"
