"""Benchmark results → one tidy DataFrame, one row per benchmark, and what the sweeps wrote
beside their rows.

Inputs: pytest-benchmark JSON files, or a sweep's journal (``*.jsonl``) when no JSON of the same
stem lies beside it (a sweep that was stopped, killed, or is still running): its ``meta`` record
holds the same header. Folders are searched recursively.

What a sweep writes beside its rows (its ``convnn_bench`` section) is read, never assumed:
``baselines`` (which implementations are baselines, which ConvNN rows each is compared with and
on which fields), ``bars`` (the headline comparisons, named by what they measure), ``notes``,
the preset and its command. A file without them (written before they were recorded) still gives
rows, figures and verdicts, but no ratios: nothing here knows which rows are baselines.

Columns: the case (implementation, mode, k, N, side, C, B, dtype, device, direction, r), the
measurements (median, iqr, peak_memory_bytes, rss_*, FLOPs, gflops, peak_fraction,
arithmetic_intensity), the verdict (verdict, error, bound, floor, base_error, compared_fraction,
the TF32 flags), status and message, and where it came from (machine, host, commit, file,
baseline: True / False / None when the file does not say).

Every file is untrusted input (`reports.untrusted`): any bytes give every good row, and what
could not be read (a torn or garbage journal line, a truncated or non-object file, a row or a
definition with fields of the wrong type) is left out and named in `Results.skipped`, which the
report lists (`skipped_markdown`) and prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reports import markdown, untrusted
from reports.untrusted import Skipped

COLUMNS = (
    "machine", "implementation", "mode", "k", "N", "side", "C", "B", "dtype", "device", "direction", "r",
    "status", "median", "iqr", "warning", "peak_memory_bytes", "rss_start_bytes", "rss_peak_bytes", "rss_growth_bytes",
    "useful_flops", "total_flops", "gflops", "useful_gflops", "peak_gflops", "peak_fraction", "arithmetic_intensity",
    "verdict", "error", "bound", "floor", "base_error", "compared_fraction", "allow_tf32_matmul", "allow_tf32_cudnn",
    "float32_matmul_precision", "backend", "input_seeds", "timer", "memory_method", "rss_method", "message", "host",
    "commit", "file",
)


class NoResults(FileNotFoundError):
    """Nothing to build a report from; the message says what to run."""


#: What to run when there are no results (the report cannot run the sweep itself).
MAKE_RESULTS = "run a sweep first: `make bench` (or `python -m suites.bench --preset default --out results/bench`)"


@dataclass
class Source:
    """One results file: where it came from and what its sweep recorded beside its rows."""

    file: str
    kind: str  # "json" or "journal"
    machine: str
    commit: str
    dirty: bool
    preset: str
    command: str
    generated_by: str
    annotated: dict[str, Any] | None
    has_definitions: bool
    has_rss: bool
    assemble_hint: str = ""
    host: list[dict[str, Any]] = field(default_factory=list)  # per run: load, threads, others' CPU


@dataclass
class Results:
    """Every row (`df`) and the definitions the files carried, merged over files."""

    df: pd.DataFrame
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    bars: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    #: What could not be read (files, lines, rows, definitions), with why.
    skipped: list[Skipped] = field(default_factory=list)


def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """The results named, or found (recursively) in the folders named: every ``*.json``, and
    every ``*.jsonl`` journal without a ``.json`` of the same stem beside it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            found += sorted(q for q in p.rglob("*.jsonl") if q.is_file() and not q.with_suffix(".json").exists())
            if not found:
                raise NoResults(f"no benchmark results in {p} (no *.json or *.jsonl); {MAKE_RESULTS}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise NoResults(f"no such file or folder: {p}; {MAKE_RESULTS}")
    return out


def machine_label(info: dict[str, Any]) -> str:
    """Host name and its device: the first GPU's name, else the CPU model and thread count."""
    gpus = info.get("gpus")
    first: dict[str, Any] = gpus[0] if isinstance(gpus, list) and gpus and isinstance(gpus[0], dict) else {}
    cpu_info: dict[str, Any] = info["cpu"] if isinstance(info.get("cpu"), dict) else {}
    cpu = info.get("cpu_model") or cpu_info.get("brand_raw") or info.get("processor") or "cpu"
    if first.get("name"):
        device = str(first["name"])
    else:
        device = f"{cpu} ({info.get('torch_threads') or info.get('cpu_threads') or '?'} threads)"
    return f"{info.get('node', 'host')}: {device}"


def _read_journal(path: Path) -> tuple[dict[str, Any], list[Skipped]]:
    """A journal as a results document: the last ``meta`` record's header, the last row of each
    case (per-worker siblings ``<journal>.gw*`` included) and the matmul peaks; and every line
    skipped, with why (`untrusted.read_json_lines`)."""
    records: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for part in [path, *sorted(path.parent.glob(path.name + ".gw*"))]:
        found, dropped = untrusted.read_json_lines(part, check=_journal_record_problem)
        records += found
        skipped += dropped
    metas = [r for r in records if r.get("type") == "meta"]
    doc: dict[str, Any] = dict(metas[-1]) if metas else {}
    last = {r["row"]["param"]: r["row"] for r in records if r.get("type") == "row"}
    doc["benchmarks"] = list(last.values())
    if not isinstance(doc.get("convnn_bench"), dict):
        doc["convnn_bench"] = {}
    doc["convnn_bench"]["peaks"] = [{k: r[k] for k in ("device", "dtype", "gflops")} for r in records if r.get("type") == "peak"]
    return doc, skipped


def _journal_record_problem(record: dict[str, Any]) -> str | None:
    """`untrusted.journal_record_problem`, and for a row record the report's own checks of its
    fields (so that a later unusable row of a case never hides an earlier good one)."""
    why = untrusted.journal_record_problem(record)
    if why is None and record.get("type") == "row":
        problem = _benchmark_problem(record["row"])
        return None if problem is None else f"a row record of case {record['row']['param']!r}: {problem}"
    return why


def _host_runs(value: object) -> list[dict[str, Any]]:
    """The results file's per-run host records, each an object whose start/end are objects too
    (anything else is left out: the host section is informative, never a reason to fail)."""
    if not isinstance(value, list):
        return []
    runs = []
    for run in value:
        if isinstance(run, dict):
            runs.append({**run, **{k: run[k] if isinstance(run.get(k), dict) else {} for k in ("start", "end")}})
    return runs


def _source(path: Path, doc: dict[str, Any], kind: str, machine: str, rows: list[dict[str, Any]]) -> Source:
    commit_info = doc.get("commit_info") or {}
    section = doc.get("convnn_bench") or {}
    command = str(section.get("command") or "")
    return Source(
        file=path.name, kind=kind, machine=machine, commit=str(commit_info.get("id") or "unknown")[:12],
        dirty=bool(commit_info.get("dirty")), preset=str(section.get("preset") or ""), command=command,
        generated_by=str(doc.get("generated_by") or ""), annotated=section.get("annotated"),
        has_definitions="baselines" in section, has_rss=any("rss_peak_bytes" in (r or {}) for r in rows),
        assemble_hint=f"{command} --assemble-only" if kind == "journal" and command else "",
        host=_host_runs(section.get("host")),
    )


# ---------------------------------------------------------------------- what a file must hold

#: Row fields and the JSON types they must have (None always allowed). Sizes must be finite.
SIZE_FIELDS = ("k", "N", "side", "C", "B", "r")
NUMBER_FIELDS = (
    "median", "iqr", "peak_memory_bytes", "rss_start_bytes", "rss_peak_bytes", "useful_flops", "total_flops", "gflops",
    "useful_gflops", "peak_gflops", "peak_fraction", "arithmetic_intensity", "error", "bound", "floor", "base_error",
    "compared_fraction",
)
TEXT_FIELDS = (
    "implementation", "mode", "dtype", "device", "direction", "status", "verdict", "message", "warning", "timer",
    "memory_method", "rss_method", "backend", "float32_matmul_precision",
)
FLAG_FIELDS = ("allow_tf32_matmul", "allow_tf32_cudnn")


def _kind(value: object) -> str:
    return untrusted.describe(value)


def row_problem(info: dict[str, Any]) -> str | None:
    """Why a benchmark row's fields (its ``extra_info``) cannot be read, or None."""
    for key in SIZE_FIELDS:
        value = info.get(key)
        if value is not None and not (untrusted.is_number(value) and math.isfinite(value)):
            return f"its {key!r} is {_kind(value) if not untrusted.is_number(value) else value!r}, not a finite number"
    for key in NUMBER_FIELDS:
        value = info.get(key)
        if value is not None and not untrusted.is_number(value):
            return f"its {key!r} is {_kind(value)}, not a number"
    for key in TEXT_FIELDS:
        value = info.get(key)
        if value is not None and not isinstance(value, str):
            return f"its {key!r} is {_kind(value)}, not a string"
    for key in FLAG_FIELDS:
        value = info.get(key)
        if value is not None and not isinstance(value, bool):
            return f"its {key!r} is {_kind(value)}, not true or false"
    return None


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def baseline_problem(b: object) -> str | None:
    """Why a baseline definition cannot be used, or None."""
    if not isinstance(b, dict):
        return f"a baseline that is {_kind(b)}, not an object"
    for key in ("name", "label", "computes"):
        if not isinstance(b.get(key), str):
            return f"a baseline whose {key!r} is {_kind(b.get(key))}, not a string"
    for key in ("match", "compared_with"):
        if not _texts(b.get(key)):
            return f"baseline {b['name']!r}: its {key!r} is not an array of strings"
    unknown = [f for f in b["match"] if f not in COLUMNS]
    if unknown:
        return f"baseline {b['name']!r}: its 'match' names fields no row has: {unknown}"
    return None


def bar_problem(bar: object) -> str | None:
    """Why a bar definition cannot be used, or None."""
    if not isinstance(bar, dict):
        return f"a bar that is {_kind(bar)}, not an object"
    for key in ("name", "metric", "baseline", "mode", "direction", "dtype"):
        if not isinstance(bar.get(key), str):
            return f"a bar whose {key!r} is {_kind(bar.get(key))}, not a string"
    for key, required in (("B", True), ("C", True), ("k", False), ("target", False)):
        value = bar.get(key)
        if (value is not None or required) and not (untrusted.is_number(value) and math.isfinite(value)):
            return f"bar {bar['name']!r}: its {key!r} is not a finite number"
    sides = bar.get("sides")
    if sides is not None and not (isinstance(sides, list) and all(untrusted.is_number(v) and math.isfinite(v) for v in sides)):
        return f"bar {bar['name']!r}: its 'sides' is not an array of finite numbers"
    if bar.get("what") is not None and not isinstance(bar["what"], str):
        return f"bar {bar['name']!r}: its 'what' is {_kind(bar['what'])}, not a string"
    return None


def note_problem(note: object) -> str | None:
    """Why a note cannot be used, or None."""
    if not isinstance(note, dict):
        return f"a note that is {_kind(note)}, not an object"
    if not isinstance(note.get("text"), str):
        return f"a note whose 'text' is {_kind(note.get('text'))}, not a string"
    where = note.get("where")
    if where is not None and not (isinstance(where, dict) and all(isinstance(v, (str, int, float, bool)) for v in where.values())):
        return "a note whose 'where' is not an object of plain values"
    return None


def peak_problem(peak: object) -> str | None:
    """Why a recorded matmul peak cannot be used, or None."""
    if not isinstance(peak, dict):
        return f"a matmul peak that is {_kind(peak)}, not an object"
    return untrusted.journal_record_problem({**peak, "type": "peak"})


def _kept(items: object, problem: Any, file: str, what: str, skipped: list[Skipped]) -> list[Any]:
    """The items of the array ``items`` that ``problem`` accepts; the others named in ``skipped``."""
    if items is None:
        return []
    if not isinstance(items, list):
        skipped.append(Skipped(file, None, f"{what}: {_kind(items)}, not an array; ignored"))
        return []
    kept = []
    for i, item in enumerate(items):
        why = problem(item)
        if why is None:
            kept.append(item)
        else:
            skipped.append(Skipped(file, None, f"{what} #{i}: {why}; ignored"))
    return kept


def _object(doc: dict[str, Any], key: str, file: str, skipped: list[Skipped]) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        skipped.append(Skipped(file, None, f"its {key!r} is {_kind(value)}, not an object; ignored"))
        return {}
    return value


def checked_document(doc: dict[str, Any], file: str, kind: str, skipped: list[Skipped]) -> dict[str, Any]:
    """``doc`` with every part the report reads checked: sections of the wrong type, and
    definitions, notes and rows that cannot be used, are left out and named in ``skipped``."""
    out = dict(doc)
    for key in ("machine_info", "commit_info"):
        out[key] = _object(doc, key, file, skipped)
    section = dict(_object(doc, "convnn_bench", file, skipped))
    for key, problem, what in (("baselines", baseline_problem, "baseline"), ("bars", bar_problem, "bar"),
                               ("notes", note_problem, "note"), ("peaks", peak_problem, "matmul peak")):
        if key in section:
            section[key] = _kept(section[key], problem, file, what, skipped)
    if section.get("annotated") is not None and not isinstance(section["annotated"], dict):
        skipped.append(Skipped(file, None, f"its 'annotated' record is {_kind(section['annotated'])}, not an object; ignored"))
        section["annotated"] = None
    for entry in _kept(section.pop("skipped_journal_lines", None), lambda e: None if isinstance(e, str) else "not a string",
                       file, "skipped journal line", skipped):
        skipped.append(Skipped(file, None, f"assembled without the journal's {entry}"))
    out["convnn_bench"] = section
    if kind == "json" and doc and not isinstance(doc.get("benchmarks"), list):
        what = "no 'benchmarks'" if "benchmarks" not in doc else f"its 'benchmarks' is {_kind(doc['benchmarks'])}"
        skipped.append(Skipped(file, None, f"{what}, not an array of rows: not a benchmark results file"))
    benchmarks = []
    rows: list[Any] = doc["benchmarks"] if isinstance(doc.get("benchmarks"), list) else []
    for i, bench in enumerate(rows):
        where = f"benchmark #{i}" + (f" ({bench.get('param')})" if isinstance(bench, dict) and isinstance(bench.get("param"), str) else "")
        why = _benchmark_problem(bench)
        if why is None:
            benchmarks.append(bench)
        else:
            skipped.append(Skipped(file, None, f"{where}: {why}; row left out"))
    out["benchmarks"] = benchmarks
    return out


def _benchmark_problem(bench: object) -> str | None:
    if not isinstance(bench, dict):
        return f"{_kind(bench)}, not an object"
    for key in ("extra_info", "stats"):
        if bench.get(key) is not None and not isinstance(bench[key], dict):
            return f"its {key!r} is {_kind(bench[key])}, not an object"
    for key in ("name", "group"):
        if bench.get(key) is not None and not isinstance(bench[key], str):
            return f"its {key!r} is {_kind(bench[key])}, not a string"
    stats = bench.get("stats") or {}
    for key in ("median", "iqr"):
        if stats.get(key) is not None and not untrusted.is_number(stats[key]):
            return f"its stats' {key!r} is {_kind(stats[key])}, not a number"
    return row_problem(bench.get("extra_info") or {})


def load_file(path: Path, skipped: list[Skipped] | None = None) -> tuple[pd.DataFrame, dict[str, Any], Source]:
    """One file's rows, its ``convnn_bench`` section and its `Source`; what could not be read
    is left out and named in ``skipped``. A file that is not a results file at all gives no
    rows (and says why in ``skipped``)."""
    skipped = [] if skipped is None else skipped
    kind = "journal" if path.suffix == ".jsonl" else "json"
    if kind == "journal":
        raw, dropped = _read_journal(path)
        skipped += dropped
    else:
        found, problem = untrusted.read_json_object(path)
        if problem is not None:
            skipped.append(problem)
        raw = found or {}
    doc = checked_document(raw, path.name, kind, skipped)
    info = doc["machine_info"]
    section: dict[str, Any] = doc["convnn_bench"]
    machine = machine_label(info)
    baselines = {b["name"] for b in section.get("baselines", [])} if "baselines" in section else None
    commit = str(doc["commit_info"].get("id") or "")[:12]
    rows, infos = [], []
    for bench in doc["benchmarks"]:
        row: dict[str, Any] = dict(bench.get("extra_info") or {})
        infos.append(dict(row))
        stats = bench.get("stats") or {}
        if row.get("median") is None and stats.get("median") is not None:
            row["median"], row["iqr"] = stats["median"], stats.get("iqr")
        row.setdefault("implementation", bench.get("name") or "?")
        row.setdefault("mode", bench.get("group") or "")
        row.setdefault("status", "ok")
        for key, value in list(row.items()):
            if isinstance(value, (dict, list)):
                row[key] = json.dumps(value, sort_keys=True)
        row.update(machine=machine, host=str(info.get("node", "")), commit=commit, file=path.name)
        row["baseline"] = None if baselines is None else row["implementation"] in baselines
        rows.append(row)
    return pd.DataFrame(rows), section, _source(path, doc, kind, machine, infos)


def load(paths: Iterable[str | Path]) -> Results:
    """Every benchmark row of every file, one DataFrame with `COLUMNS` first, and the merged
    definitions (a baseline or bar defined by several files: the first one read). Whatever a
    file holds, this never raises on it: what cannot be read is in `Results.skipped`."""
    files = result_files(paths)
    if not files:
        raise NoResults(f"no benchmark results given; {MAKE_RESULTS}")
    results = Results(pd.DataFrame())
    frames = []
    for path in files:
        frame, section, source = load_file(path, results.skipped)
        results.sources.append(source)
        if not frame.empty:
            frames.append(frame)
        for b in section.get("baselines", []):
            results.baselines.setdefault(b["name"], b)
        names = {bar["name"] for bar in results.bars}
        results.bars += [bar for bar in section.get("bars", []) if bar["name"] not in names]
        results.notes += [{**note, "file": path.name} for note in section.get("notes", [])]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "baseline"])
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    for col in ("k", "N", "side", "C", "B"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("rss_start_bytes", "rss_peak_bytes", "peak_memory_bytes", "median", "iqr", "error", "bound"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["rss_growth_bytes"] = df["rss_peak_bytes"] - df["rss_start_bytes"]
    ordered = [*COLUMNS, "baseline"]
    results.df = df[ordered + [c for c in df.columns if c not in ordered]]
    return results


def skipped_markdown(skipped: list[Skipped]) -> list[str]:
    """The report's *Skipped input* section: every file and line left out and why (Markdown
    lines, every field escaped); nothing when nothing was skipped."""
    if not skipped:
        return []
    files = len({s.file for s in skipped})
    lines = ["## Skipped input", "",
             f"{len(skipped)} entries of {files} file{'s' if files > 1 else ''} could not be read and are left out "
             "of every table and figure (every other row is kept):", ""]
    lines += [f"- {markdown.code(s.file)}" + (f" line {s.line}" if s.line is not None else "") + f": {markdown.text(s.reason)}"
              for s in skipped]
    return [*lines, ""]
