"""Reading result files as untrusted input: any byte sequence gives the good records it holds and
a `Skipped` entry (file, line, why) for everything else, never an exception.

- `read_json_lines`: a JSON-lines file (a sweep's journal, a results log): every line that is a
  JSON object; a line that is not UTF-8, not JSON, not an object, or torn (no newline at the end
  and not JSON) is named and skipped.
- `read_json_object`: a whole-file JSON document (a results file) that must be one object.
- `journal_record_problem`: why a journal record cannot be used (a ``row`` without its ``row``
  object or its ``param``, a ``peak`` without numbers...), or None.

Standard library only: the report (`reports.load`) and the sweep (`suites.jsonl`,
`suites.bench.journal`) read with the same rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

Record = dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    """Something a reader left out: the file, its line (None: the whole file or a field of it)
    and why."""

    file: str
    line: int | None
    reason: str

    #: A reason quoting a damaged value is cut at this many characters.
    LIMIT = 300

    def __post_init__(self) -> None:
        if len(self.reason) > self.LIMIT:
            object.__setattr__(self, "reason", self.reason[: self.LIMIT - 1] + "…")

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


def describe(value: object) -> str:
    """What a JSON value is, in words (for a skip reason)."""
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _parse(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(None, why not)`` for one JSON text given as bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit, nesting too deep
        return None, f"not readable JSON ({type(exc).__name__}: {str(exc)[:80]})"


def read_json_lines(
    path: str | Path, *, label: str | None = None, check: Callable[[Record], str | None] | None = None
) -> tuple[list[Record], list[Skipped]]:
    """The JSON objects of ``path``, one per line, and what was skipped (blank lines are not
    records and are not reported). ``check(record)``: why a record cannot be used (None: it
    can), e.g. `journal_record_problem`. ``label`` names the file in `Skipped` (default: its
    name). A missing file has no records; an unreadable one is one `Skipped`."""
    path = Path(path)
    name = label or path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [Skipped(name, None, f"cannot be read ({exc.strerror or exc})")]
    records: list[Record] = []
    skipped: list[Skipped] = []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        last = number == len(lines)
        if not raw.strip():
            continue
        value, why = _parse(raw)
        if why is not None:
            if last:
                why = f"torn (no newline at the end of the file: a write cut short?); {why}"
            skipped.append(Skipped(name, number, why))
        elif not isinstance(value, dict):
            skipped.append(Skipped(name, number, f"{describe(value)}, not a JSON object"))
        elif check is not None and (problem := check(value)) is not None:
            skipped.append(Skipped(name, number, problem))
        else:
            records.append(value)
    return records, skipped


def read_json_object(path: str | Path, *, label: str | None = None) -> tuple[Record | None, Skipped | None]:
    """The JSON object ``path`` holds, or None and why not (empty, truncated, not JSON, not an
    object, unreadable). Bytes that are not UTF-8 do not lose the whole file: it is read with
    U+FFFD in their place, and the second value says so."""
    path = Path(path)
    name = label or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, Skipped(name, None, f"cannot be read ({exc.strerror or exc})")
    if not data.strip():
        return None, Skipped(name, None, "empty file")
    value, why = _parse(data)
    damaged = None
    if why is not None and why.startswith("not UTF-8"):
        value, still = _parse(data.decode("utf-8", errors="replace").encode("utf-8"))
        damaged = Skipped(name, None, f"{why}: read with U+FFFD in place of the bytes that are not UTF-8")
        why = None if still is None else f"{why}; {still}"
    if why is not None:
        return None, Skipped(name, None, f"{why}; truncated or damaged")
    if not isinstance(value, dict):
        return None, Skipped(name, None, f"{describe(value)}, not a JSON object")
    return value, damaged


# --------------------------------------------------------------------------- journal records


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def journal_record_problem(record: Record) -> str | None:
    """Why ``record`` (a JSON object from a sweep's journal) cannot be used, or None. Records of
    an unknown ``type`` are not a problem (a newer writer may add some); they are ignored."""
    kind = record.get("type")
    if kind == "row":
        row = record.get("row")
        if not isinstance(row, dict):
            return f"a row record whose 'row' is {describe(row)}, not an object"
        if not isinstance(row.get("param"), str):
            return f"a row record whose row's 'param' (the case id) is {describe(row.get('param'))}, not a string"
        for key in ("extra_info", "stats"):
            if row.get(key) is not None and not isinstance(row[key], dict):
                return f"a row record whose row's {key!r} is {describe(row[key])}, not an object"
    elif kind == "start":
        if not isinstance(record.get("id"), str):
            return f"a start record whose 'id' is {describe(record.get('id'))}, not a string"
    elif kind == "peak":
        for key in ("device", "dtype"):
            if not isinstance(record.get(key), str):
                return f"a peak record whose {key!r} is {describe(record.get(key))}, not a string"
        gflops = record.get("gflops")
        if not is_number(gflops) or not math.isfinite(gflops) or gflops <= 0:
            return "a peak record whose 'gflops' is not a positive finite number"
    return None
