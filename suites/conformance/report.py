"""Reports from the results log (never from a live run): ``matrix.csv``, ``summary.md`` for one
implementation and ``comparison.md`` for several.

- matrix.csv: one row per test (property × status × kind × max error × examples tried, the
  case, the replay line).
- summary.md: counts by status, then every failure, timeout and crash with its counterexample
  and replay line, skips grouped by reason, and the passing properties; pasteable into an issue.
- comparison.md: properties down, implementations across.
"""

from __future__ import annotations

import csv
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from reports import markdown as md
from suites import jsonl
from suites.conformance import records

MATRIX_COLUMNS = (
    "property",
    "status",
    "kind",
    "max_error",
    "base_error",
    "bound",
    "examples",
    "shrinks",
    "duration_s",
    "reason",
    "worst",
    "case",
    "replay",
    "nodeid",
)
_MESSAGE_LINES = 40


@dataclass
class ImplReport:
    """What the reports of one implementation are made from."""

    name: str
    spec: str
    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    errors: list[records.Record]
    #: Tests of the same paths that take no implementation (convnn_ref's own layers): not run.
    without_impl: int = 0
    #: What ``teardown()`` raised, if it did.
    teardown_errors: tuple[str, ...] = ()
    #: Lines of the results log that could not be read (`records.read_checked`).
    skipped: tuple[jsonl.Skipped, ...] = ()


def load(directory: Path) -> ImplReport:
    """Read ``directory/results.jsonl`` into rows, one per test in collection order."""
    raw, skipped = records.read_checked(directory / "results.jsonl")
    state = records.summarize(raw)
    properties: dict[str, str] = {}
    modes: dict[str, list[dict[str, Any]]] = {}
    without_impl = 0
    for rec in raw:
        if rec.get("event") == "modes":
            modes[rec["nodeid"]] = rec.get("modes") or []
        if rec.get("event") == "collected":
            properties.update(rec.get("properties", {}))
            without_impl = max(without_impl, int(rec.get("without_impl", 0)))
    rows = []
    for nodeid in state.collected:
        rec = state.finished.get(nodeid, {"status": "not run"})
        prop = rec.get("property") or properties.get(nodeid) or nodeid
        row = {key: rec.get(key) for key in MATRIX_COLUMNS}
        row.update(property=short_property(prop), nodeid=nodeid, duration_s=rec.get("duration"), message=rec.get("message"))
        row["falsifying"], row["blob"], row["exc_type"] = rec.get("falsifying"), rec.get("blob"), rec.get("exc_type")
        row["failures"], row["errors_by_dtype"] = rec.get("failures") or [], rec.get("errors_by_dtype") or {}
        row["modes"] = modes.get(nodeid, [])
        rows.append(row)
    runner = state.runner[-1] if state.runner else {}
    settings = {k: runner.get(k) for k in ("paths", "keyword", "hypothesis_profile", "timeout")}
    teardown = tuple(str(r.get("error")) for r in raw if r.get("event") == "teardown-error")
    spec = str(runner.get("spec", directory.name))
    return ImplReport(directory.name, spec, rows, settings, state.errors, without_impl, teardown, tuple(skipped))


def short_property(prop: str) -> str:
    """``suites/equivalence/test_x.py::test_y[cpu]`` -> ``test_x.py::test_y[cpu]``."""
    path, sep, rest = prop.partition("::")
    return f"{path.rsplit('/', 1)[-1]}{sep}{rest}"


def counts(rows: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(row["status"] for row in rows)


def write_reports(directory: Path) -> ImplReport:
    """Write ``matrix.csv`` and ``summary.md`` beside the log; return what they were made from."""
    report = load(directory)
    with open(directory / "matrix.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MATRIX_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in report.rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in MATRIX_COLUMNS})
    (directory / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
    return report


def environment_line() -> str:
    versions = []
    for dist in ("convnn-ref", "torch", "hypothesis"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join([*versions, f"Python {platform.python_version()}", platform.machine()])


def verdict(report: ImplReport) -> str:
    c = counts(report.rows)
    bad = sum(c[s] for s in records.BAD_STATUSES)
    if report.errors:
        return "**The properties could not be run** (see *Run errors*)."
    if not report.rows:
        return "**No property was collected.**"
    if bad:
        failing = len({row["property"] for row in report.rows if row["status"] in records.BAD_STATUSES})
        return f"**{bad} of {len(report.rows)} tests did not pass ({failing} properties).**"
    if c["convention"]:
        return (
            f"**Every applicable property holds** ({c['passed']} passed, {c['skipped']} skipped); "
            f"{c['convention']} error-convention findings (invalid input refused with the implementation's own error)."
        )
    if c["not run"]:
        return f"**Incomplete: {c['not run']} tests not run yet** (rerun the same command to resume)."
    return f"**Every applicable property holds** ({c['passed']} passed, {c['skipped']} skipped)."


def summary_markdown(report: ImplReport) -> str:
    """The Markdown summary of one implementation."""
    s = report.settings
    c = counts(report.rows)
    timeout = s.get("timeout") if isinstance(s.get("timeout"), (int, float)) else 0
    lines = [
        f"# Conformance of {md.code(report.name)}",
        "",
        f"Implementation {md.code(report.spec)} · properties {md.code(' '.join(map(str, s.get('paths') or [])))}"
        + (f" -k {md.code(s['keyword'])}" if s.get("keyword") else "")
        + f" · Hypothesis profile {md.code(s.get('hypothesis_profile'))} · per-case limit {timeout or 0:g} s"
        + f" · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {environment_line()}",
        "",
        verdict(report),
        "",
        "| status | tests |",
        "|---|---:|",
        *(f"| {status} | {c[status]} |" for status in records.STATUSES if c[status]),
        "",
    ]
    for err in report.errors:
        lines += ["## Run errors", "", f"pytest exit status {md.text(err.get('returncode'))}:", "", *_fenced(str(err.get("output", "")))]
    if report.teardown_errors:
        lines += ["## teardown() raised", "", *(f"- {md.code(e)}" for e in report.teardown_errors), ""]
    bad = [row for row in report.rows if row["status"] in records.BAD_STATUSES]
    if bad:
        lines += [f"## Not passing ({len(bad)})", ""]
        for row in bad:
            lines += _problem(row)
    conventions = [row for row in report.rows if row["status"] == "convention"]
    if conventions:
        lines += [
            f"## Error conventions ({len(conventions)})",
            "",
            "Invalid input refused loudly, but not with the contract's `ValueError`/`TypeError` naming the argument "
            "(not a wrong result; declare `named_errors=True` to have these count as failures):",
            "",
            *(f"- {md.code(row['property'])}: {md.text(row.get('reason') or '')}" for row in conventions),
            "",
        ]
    skipped = Counter(str(row.get("reason") or "(no reason given)") for row in report.rows if row["status"] == "skipped")
    if skipped:
        lines += ["## Skipped", "", "| reason | tests |", "|---|---:|"]
        lines += [f"| {md.text(reason)} | {n} |" for reason, n in skipped.most_common()]
        lines.append("")
    passed = [row for row in report.rows if row["status"] == "passed"]
    if passed:
        errors = any(row.get("max_error") is not None for row in passed)
        lines += ["## Passed", "", f"<details><summary>{len(passed)} tests</summary>", ""]
        # max error and bound of the example closest to its bound (suites.tolerance.Measurement)
        header = ["| property | examples | max error / bound, per dtype |", "|---|---:|---|"]
        lines += header if errors else ["| property | examples |", "|---|---:|"]
        for row in passed:
            measured = [_per_dtype(row)] if errors else []
            cells = [md.code(row["property"], table=True), _num(row.get("examples")), *measured]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "</details>", ""]
    if report.without_impl:
        lines += [f"{report.without_impl} tests of these files take no implementation (they check convnn_ref's own layers) and were not run.", ""]
    if report.skipped:
        lines += ["## Skipped log lines", "", f"{len(report.skipped)} lines of the results log could not be read and are left out:", ""]
        lines += [f"- line {entry.line}: {md.text(entry.reason)}" for entry in report.skipped]
        lines.append("")
    lines += ["Raw results: `results.jsonl`; one row per test: `matrix.csv`.", ""]
    return "\n".join(lines)


def _per_dtype(row: dict[str, Any]) -> str:
    """``float64 1.2e-15 / 3.4e-15; float32 ...``: the worst passing check of each dtype (the
    one closest to its bound), or the overall one when the test recorded no dtype."""
    by_dtype = row.get("errors_by_dtype") or {}
    if by_dtype:
        return "; ".join(f"{md.text(d)} {_num(v.get('max_error'))} / {_num(v.get('bound'))}" for d, v in sorted(by_dtype.items()))
    if row.get("max_error") is None:
        return ""
    return f"{_num(row.get('max_error'))} / {_num(row.get('bound'))}"


def _problem(row: dict[str, Any]) -> list[str]:
    status = md.text(row["status"]) + (f" ({md.text(row['kind'])})" if row.get("kind") else "")
    out = [f"### {md.code(row['property'])}: {status}", ""]
    several = row.get("failures") or []
    if several:
        out += [f"Hypothesis found {len(several)} distinct failures, each shrunk on its own:", ""]
        for i, f in enumerate(several, 1):
            head = f"{i}. **{md.text(f.get('kind', '?'))}**: {md.text(f.get('what') or f.get('exc_type', ''))}"
            if f.get("max_error") is not None:
                head += f" (error {_num(f['max_error'])} > bound {_num(f.get('bound'))})"
            out.append(head)
            if f.get("case"):
                out.append(f"   - case: {md.code(f['case'])}")
            elif f.get("falsifying"):
                out.append(f"   - {md.text(str(f['falsifying'])[:400])}")
        out.append("")
    modes = row.get("modes") or []
    if modes:
        out += ["Searched again with one knob pinned at a time (each mode's own shrunk counterexample):", ""]
        out += ["| pinned | status | kind | max error | case |", "|---|---|---|---:|---|"]
        for m in modes:
            out.append(
                f"| {md.code(m.get('pin'), table=True)} | {md.text(m.get('status'))} | {md.text(m.get('kind') or '')} | "
                f"{_num(m.get('max_error'))} | {md.text(str(m.get('case') or '')[:300])} |"
            )
        out.append("")
    if row.get("max_error") is not None:
        out.append(
            f"- max error {_num(row['max_error'])} > bound {_num(row.get('bound'))} (base error {_num(row.get('base_error'))})"
        )
    if row.get("examples") is not None:
        out.append(f"- Hypothesis examples: {_num(row['examples'])} tried, {_num(row.get('shrinks') or 0)} while shrinking")
    if row.get("reason"):
        out.append(f"- {md.text(row['reason'])}")
    if row.get("worst"):
        out.append(f"- {md.text(row['worst'])}")
    if row.get("case"):
        out.append(f"- case: {md.code(row['case'])}")
    if row.get("blob"):
        out.append(f"- Hypothesis blob: {md.code(row['blob'])}")
    out.append(f"- replay: {md.code(row['replay'])}" if row.get("replay") else f"- test id: {md.code(row['nodeid'])}")
    message = str(row.get("message") or "")
    if message:
        out += ["", "<details><summary>message</summary>", "", *_fenced(message), "</details>"]
    return [*out, ""]


def comparison_markdown(reports: Sequence[ImplReport]) -> str:
    """Properties down, implementations across; skip reasons as numbered notes."""
    properties = list(dict.fromkeys(row["property"] for r in reports for row in r.rows))
    notes: dict[str, int] = {}
    cells: dict[tuple[str, str], str] = {}
    for r in reports:
        for row in r.rows:
            cells[(r.name, row["property"])] = _comparison_cell(row, notes)
    lines = [
        "# Conformance comparison",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {environment_line()}",
        "",
        "| property | " + " | ".join(md.code(r.name, table=True) for r in reports) + " |",
        "|---|" + "---|" * len(reports),
    ]
    for prop in properties:
        lines.append(f"| {md.code(prop, table=True)} | " + " | ".join(cells.get((r.name, prop), "–") for r in reports) + " |")
    totals = [", ".join(f"{n} {s}" for s in records.STATUSES if (n := counts(r.rows)[s])) or "nothing run" for r in reports]
    lines += ["| **totals** | " + " | ".join(totals) + " |", ""]
    if notes:
        lines += ["Skip reasons:", ""] + [f"{n}. {md.text(reason)}" for reason, n in notes.items()] + [""]
    lines += ["Cells: status, the failure's kind and max error; each implementation's `summary.md` has the counterexamples.", ""]
    return "\n".join(lines)


def _comparison_cell(row: dict[str, Any], notes: dict[str, int]) -> str:
    status = row["status"]
    if status == "skipped":
        reason = str(row.get("reason") or "(no reason given)")
        return f"skipped [{notes.setdefault(reason, len(notes) + 1)}]"
    if status not in records.BAD_STATUSES:
        return md.text(status)
    parts = [f"**{status}**"]
    if row.get("kind"):
        parts.append(md.text(row["kind"]))
    if row.get("max_error") is not None:
        parts.append(_num(row["max_error"]))
    return " ".join(parts)


def _num(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return md.text(value)


def _fenced(text: str) -> list[str]:
    body = text.strip("\n").split("\n")
    if len(body) > _MESSAGE_LINES:
        body = [*body[: _MESSAGE_LINES // 2], f"[... {len(body) - _MESSAGE_LINES} lines cut ...]", *body[-_MESSAGE_LINES // 2 :]]
    return ["```", *(line.replace("```", "'''") for line in body), "```", ""]
