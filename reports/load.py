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
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

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
    gpus = info.get("gpus") or []
    cpu = info.get("cpu_model") or (info.get("cpu") or {}).get("brand_raw") or info.get("processor") or "cpu"
    device = gpus[0]["name"] if gpus else f"{cpu} ({info.get('torch_threads') or info.get('cpu_threads') or '?'} threads)"
    return f"{info.get('node', 'host')}: {device}"


def _read_journal(path: Path) -> dict[str, Any]:
    """A journal as a results document: the last ``meta`` record's header, the last row of each
    case (per-worker siblings ``<journal>.gw*`` included) and the matmul peaks."""
    records: list[dict[str, Any]] = []
    for part in [path, *sorted(path.parent.glob(path.name + ".gw*"))]:
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill
                continue
    metas = [r for r in records if r.get("type") == "meta"]
    doc: dict[str, Any] = dict(metas[-1]) if metas else {}
    last = {r["row"]["param"]: r["row"] for r in records if r.get("type") == "row"}
    doc["benchmarks"] = list(last.values())
    section = doc.setdefault("convnn_bench", {})
    section["peaks"] = [{k: r[k] for k in ("device", "dtype", "gflops")} for r in records if r.get("type") == "peak"]
    return doc


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
        host=list(section.get("host") or []),
    )


def load_file(path: Path) -> tuple[pd.DataFrame, dict[str, Any], Source]:
    """One file's rows, its ``convnn_bench`` section and its `Source`."""
    kind = "journal" if path.suffix == ".jsonl" else "json"
    doc = _read_journal(path) if kind == "journal" else json.loads(path.read_text(encoding="utf-8"))
    info = doc.get("machine_info", {})
    section: dict[str, Any] = doc.get("convnn_bench") or {}
    machine = machine_label(info)
    baselines = {b["name"] for b in section.get("baselines", [])} if "baselines" in section else None
    commit = str((doc.get("commit_info") or {}).get("id") or "")[:12]
    rows, infos = [], []
    for bench in doc.get("benchmarks", []):
        row: dict[str, Any] = dict(bench.get("extra_info") or {})
        infos.append(dict(row))
        stats = bench.get("stats") or {}
        if row.get("median") is None and stats.get("median") is not None:
            row["median"], row["iqr"] = stats["median"], stats.get("iqr")
        row.setdefault("implementation", bench.get("name", "?"))
        row.setdefault("mode", bench.get("group") or "")
        row.setdefault("status", "ok")
        for key, value in list(row.items()):
            if isinstance(value, (dict, list)):
                row[key] = json.dumps(value, sort_keys=True)
        row.update(machine=machine, host=info.get("node", ""), commit=commit, file=path.name)
        row["baseline"] = None if baselines is None else row["implementation"] in baselines
        rows.append(row)
    return pd.DataFrame(rows), section, _source(path, doc, kind, machine, infos)


def load(paths: Iterable[str | Path]) -> Results:
    """Every benchmark row of every file, one DataFrame with `COLUMNS` first, and the merged
    definitions (a baseline or bar defined by several files: the first one read)."""
    files = result_files(paths)
    if not files:
        raise NoResults(f"no benchmark results given; {MAKE_RESULTS}")
    results = Results(pd.DataFrame())
    frames = []
    for path in files:
        frame, section, source = load_file(path)
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
