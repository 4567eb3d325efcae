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


read = jsonl.read


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
