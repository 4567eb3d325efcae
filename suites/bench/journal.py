"""The sweep's journal: one JSON object per line (`suites.jsonl`), appended and forced to disk as
each case finishes, so a sweep killed half-way keeps its rows and a rerun resumes after them.
One sweep writes a journal at a time: the runner holds `lock_path` for the whole run.

Records:
- ``{"type": "meta", "run": ..., ...}``: written by the runner as a run starts: the header of
  the results file (machine and commit info, the preset, its baselines and bars), so that a
  journal whose sweep never finished can still be read on its own; only when the journal has
  none yet, or cases remain and the header changed (`suites.bench.__main__.meta_needed`);
- ``{"type": "start", "id": ..., "run": ...}`` before a case runs;
- ``{"type": "row", "row": {...}}`` when it ends (a pytest-benchmark benchmark entry, failures
  included);
- ``{"type": "peak", "device": ..., "dtype": ..., "gflops": ...}``: the matmul peak, measured
  once per journal.

The journal is read as untrusted input: a line that is torn, not JSON, not an object, or a record
without what its type needs (a ``row`` without its ``row`` object or ``param``) is skipped and
named (`read_all_checked`), never a traceback; the writer ends a torn last line before appending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.untrusted import Skipped, journal_record_problem
from suites.jsonl import Record, append, read_checked

__all__ = [
    "append", "done_ids", "lock_path", "peaks", "read", "read_all", "read_all_checked", "refusal", "rows", "started_ids",
]

#: Environment of a pytest started by the runner: the lock descriptor it passes down and the
#: run's identifier (on every ``start`` record, so the runner knows which cases this run began).
LOCK_FD_ENV = "CONVNN_BENCH_LOCK_FD"
RUN_ENV = "CONVNN_BENCH_RUN"


def lock_path(journal: str | Path) -> Path:
    """The lock file beside ``journal`` (held by the sweep writing it)."""
    journal = Path(journal)
    return journal.with_name(journal.name + ".lock")


def refusal(journal: str | Path, holder: Record) -> str:
    """The message that refuses a second writer of ``journal``; ``holder`` is what the lock
    file says (`suites.jsonl.LockHeld.holder`)."""
    who = f"PID {holder.get('pid', '?')}"
    if holder.get("child"):
        who += f", its pytest PID {holder['child']}"
    if holder.get("command"):
        who += f": {holder['command']}"
    return (f"another sweep is writing the journal {journal} ({who}); wait for it to finish or stop it, "
            "then run this again (a lock left by a dead process never blocks)")


def read(path: str | Path) -> list[Record]:
    """The usable records of one journal file (see `read_all_checked`)."""
    return read_checked(path, journal_record_problem)[0]


def read_all(path: str | Path) -> list[Record]:
    """The usable records of ``path`` and of its per-worker siblings (`read_all_checked`)."""
    return read_all_checked(path)[0]


def read_all_checked(path: str | Path) -> tuple[list[Record], list[Skipped]]:
    """The records of ``path`` and of its per-worker siblings ``path.gw0``, ``path.gw1``, ...
    (pytest-xdist workers each append to their own file), and every line skipped with why."""
    path = Path(path)
    records, skipped = read_checked(path, journal_record_problem)
    for sibling in sorted(path.parent.glob(path.name + ".gw*")):
        more, dropped = read_checked(sibling, journal_record_problem)
        records += more
        skipped += dropped
    return records, skipped


def rows(records: list[Record]) -> list[dict[str, Any]]:
    """The benchmark rows, the last one kept when a case was recorded twice."""
    return list(_last_rows(records).values())


def done_ids(records: list[Record], retry: tuple[str, ...] = ()) -> set[str]:
    """Cases with a row, except those whose last row has a status in ``retry``."""
    return {case_id for case_id, row in _last_rows(records).items() if (row.get("extra_info") or {}).get("status") not in retry}


def _last_rows(records: list[Record]) -> dict[str, dict[str, Any]]:
    return {r["row"]["param"]: r["row"] for r in records if r.get("type") == "row"}


def started_ids(records: list[Record], run: str | None = None) -> set[str]:
    """Cases with a ``start`` record (of run ``run`` only, when given)."""
    return {r["id"] for r in records if r.get("type") == "start" and (run is None or r.get("run") == run)}


def peaks(records: list[Record]) -> dict[tuple[str, str], float]:
    """The matmul peaks recorded, by (device, dtype)."""
    return {(r["device"], r["dtype"]): r["gflops"] for r in records if r.get("type") == "peak"}

