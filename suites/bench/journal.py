"""The sweep's journal: one JSON object per line, appended and flushed as each case finishes,
so a sweep killed half-way keeps its rows and a rerun resumes after them.

Records: ``{"type": "start", "id": ...}`` before a case runs; ``{"type": "row", "row": {...}}``
when it ends (a pytest-benchmark benchmark entry, failures included); ``{"type": "peak",
"device": ..., "dtype": ..., "gflops": ...}`` for the matmul peak, measured once per run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record and flush it to disk (safe against a kill right after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record; a torn last line (a kill mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_all(path: str | Path) -> list[dict[str, Any]]:
    """The records of ``path`` and of its per-worker siblings ``path.gw0``, ``path.gw1``, ...
    (pytest-xdist workers each append to their own file)."""
    path = Path(path)
    records = read(path)
    for sibling in sorted(path.parent.glob(path.name + ".gw*")):
        records += read(sibling)
    return records


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark rows, the last one kept when a case was recorded twice."""
    return list(_last_rows(records).values())


def done_ids(records: list[dict[str, Any]], retry: tuple[str, ...] = ()) -> set[str]:
    """Cases with a row, except those whose last row has a status in ``retry``."""
    return {case_id for case_id, row in _last_rows(records).items() if row["extra_info"].get("status") not in retry}


def _last_rows(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["row"]["param"]: r["row"] for r in records if r.get("type") == "row"}


def started_ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records if r.get("type") == "start"}


def peaks(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["device"], r["dtype"]): r["gflops"] for r in records if r.get("type") == "peak"}
