"""Crash-safe JSON-lines files: one record per line, appended and forced to disk before
`append` returns, so a process killed mid-run keeps every record it wrote. The conformance
runner's results log and the benchmark sweep's journal both use it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def append(path: str | Path, record: Record) -> None:
    """Append one record and force it to disk (safe against a kill right after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, allow_nan=True) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read(path: str | Path) -> list[Record]:
    """Every complete record of ``path`` (none when it does not exist); a torn last line (a kill
    mid-write) is skipped."""
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
