"""The results log: one JSON object per line, appended (and flushed to disk) as tests start and
finish, so that a crash of the process under test keeps everything measured before it.

Events (``"event"`` field):
- ``runner``: one per runner invocation: the implementation spec and the settings of the run.
- ``session``: one per pytest process (a resumed run has several).
- ``collected``: the test ids that session selected, in order (before skipping finished ones).
- ``start``: a test began (``nodeid``).
- ``finish``: a test ended: ``status`` (`STATUSES`), and what was measured (see `plugin.py`).
  The runner writes ``finish`` itself for a test that never finished (``crashed``, ``timeout``).
- ``teardown-error``: the implementation's ``teardown()`` raised (``error``).
- ``complete``: every test has a result; a rerun only rebuilds the reports.
- ``run-error``: pytest could not run at all (the implementation does not load, bad options).

The log is read as untrusted input: lines that are torn, not JSON, not objects, or records without
what their event needs are skipped and named (`read_checked`), never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suites import jsonl

#: Every status a test can end with, in the order reports list them.
STATUSES = ("passed", "failed", "error", "timeout", "crashed", "convention", "skipped", "xfailed", "xpassed", "not run")
#: Statuses that count as a problem of the implementation (or of the run).
BAD_STATUSES = ("failed", "error", "timeout", "crashed")
#: The prefix of an xfail reason that is an error-convention finding (`suites.equivalence._common`):
#: invalid input refused loudly, but not with the contract's named error. Reported apart.
CONVENTION_PREFIX = "error convention"

Record = dict[str, Any]


def append(path: Path, record: Record) -> None:
    """Append one record, stamped with the time, and force it to disk before returning."""
    jsonl.append(path, {"time": round(time.time(), 3), **record})


def record_problem(record: Record) -> str | None:
    """Why a record of the log cannot be used (the log is read as untrusted input), or None:
    events about a test need its ``nodeid`` as a string, lists must be lists of strings, fields
    read as objects must be objects. Unknown events are not a problem (ignored)."""
    event = record.get("event")
    if event in ("start", "finish", "modes") and not isinstance(record.get("nodeid"), str):
        return f"a {event!r} record without a string 'nodeid'"
    if event == "collected":
        nodeids = record.get("nodeids", [])
        if not (isinstance(nodeids, list) and all(isinstance(n, str) for n in nodeids)):
            return "a 'collected' record whose 'nodeids' is not an array of strings"
        properties = record.get("properties", {})
        if not (isinstance(properties, dict) and all(isinstance(v, str) for v in properties.values())):
            return "a 'collected' record whose 'properties' is not an object of strings"
        without = record.get("without_impl", 0)
        if not (isinstance(without, int) and not isinstance(without, bool)):
            return "a 'collected' record whose 'without_impl' is not an integer"
    if event == "finish":
        if not isinstance(record.get("status"), str):
            return "a 'finish' record without a string 'status'"
        if record.get("property") is not None and not isinstance(record["property"], str):
            return "a 'finish' record whose 'property' is not a string"
        for key in ("failures",):
            if record.get(key) is not None and not (isinstance(record[key], list) and all(isinstance(f, dict) for f in record[key])):
                return f"a 'finish' record whose {key!r} is not an array of objects"
        by_dtype = record.get("errors_by_dtype")
        if by_dtype is not None and not (isinstance(by_dtype, dict) and all(isinstance(v, dict) for v in by_dtype.values())):
            return "a 'finish' record whose 'errors_by_dtype' is not an object of objects"
    if event == "modes":
        modes = record.get("modes")
        if modes is not None and not (isinstance(modes, list) and all(isinstance(m, dict) for m in modes)):
            return "a 'modes' record whose 'modes' is not an array of objects"
    if event == "runner" and record.get("paths") is not None and not isinstance(record["paths"], list):
        return "a 'runner' record whose 'paths' is not an array"
    return None


def read_checked(path: Path) -> tuple[list[Record], list[jsonl.Skipped]]:
    """The usable records of the log at ``path`` and every line skipped, with why (a line torn
    by a crash, garbage, a record `record_problem` refuses); never raises."""
    return jsonl.read_checked(path, record_problem)


def read(path: Path) -> list[Record]:
    """The usable records of the log at ``path`` (`read_checked`)."""
    return read_checked(path)[0]


@dataclass
class LogState:
    """What a log says so far."""

    runner: list[Record] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    finished: dict[str, Record] = field(default_factory=dict)
    #: Tests started in the latest pytest session that have no finish yet.
    unfinished: list[str] = field(default_factory=list)
    complete: bool = False
    errors: list[Record] = field(default_factory=list)

    def remaining(self) -> list[str]:
        return [n for n in self.collected if n not in self.finished]


def summarize(records: Iterable[Record]) -> LogState:
    """Fold the events of a log into a `LogState` (the last finish of a test wins)."""
    state = LogState()
    seen: set[str] = set()
    started: list[str] = []
    done: set[str] = set()
    for rec in records:
        event = rec.get("event")
        if event == "runner":
            state.runner.append(rec)
            state.complete = False
            state.errors = []
        elif event == "session":
            started, done = [], set()
        elif event == "collected":
            for nodeid in rec.get("nodeids", []):
                if nodeid not in seen:
                    seen.add(nodeid)
                    state.collected.append(nodeid)
        elif event == "start":
            started.append(rec["nodeid"])
        elif event == "finish":
            state.finished[rec["nodeid"]] = rec
            done.add(rec["nodeid"])
            if rec["nodeid"] not in seen:
                seen.add(rec["nodeid"])
                state.collected.append(rec["nodeid"])
        elif event == "complete":
            state.complete = True
        elif event == "run-error":
            state.errors.append(rec)
    state.unfinished = [n for n in started if n not in done]
    return state
