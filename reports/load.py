"""pytest-benchmark JSON files → one tidy DataFrame, one row per benchmark.

Columns: the case (implementation, mode, k, N, side, C, B, dtype, device, direction, r), the
measurements (median, iqr, peak_memory_bytes, useful/total FLOPs, gflops, peak_fraction,
arithmetic_intensity), the verdict (verdict, error, bound, compared_fraction), status and
message, and where it came from (machine, host, commit, file). Rows from files written by plain
``pytest --benchmark-json`` without this suite's extra_info keep what they have.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

#: Implementations that are baselines; every other implementation is a ConvNN under test.
BASELINES = ("conv2d", "conv2d-depthwise", "sdpa", "sdpa-math", "kvt-dense", "dense-naive")

COLUMNS = (
    "machine", "implementation", "mode", "k", "N", "side", "C", "B", "dtype", "device", "direction", "r",
    "status", "median", "iqr", "warning", "peak_memory_bytes", "useful_flops", "total_flops", "gflops",
    "useful_gflops", "peak_gflops", "peak_fraction", "arithmetic_intensity", "verdict", "error", "bound",
    "base_error", "compared_fraction", "backend", "timer", "memory_method", "message", "host", "commit", "file",
)


def json_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``*.json`` files named, or found (recursively) in the folders named."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.json") if q.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def machine_label(info: dict[str, Any]) -> str:
    """Host name and its device: the first GPU's name, else the CPU model and thread count."""
    gpus = info.get("gpus") or []
    cpu = info.get("cpu_model") or (info.get("cpu") or {}).get("brand_raw") or info.get("processor") or "cpu"
    device = gpus[0]["name"] if gpus else f"{cpu} ({info.get('torch_threads') or info.get('cpu_threads') or '?'} threads)"
    return f"{info.get('node', 'host')}: {device}"


def load_file(path: Path) -> pd.DataFrame:
    doc = json.loads(path.read_text(encoding="utf-8"))
    info = doc.get("machine_info", {})
    commit = (doc.get("commit_info") or {}).get("id") or ""
    rows = []
    for bench in doc.get("benchmarks", []):
        row: dict[str, Any] = dict(bench.get("extra_info") or {})
        stats = bench.get("stats") or {}
        if row.get("median") is None and stats.get("median") is not None:
            row["median"], row["iqr"] = stats["median"], stats.get("iqr")
        row.setdefault("implementation", bench.get("name", "?"))
        row.setdefault("mode", bench.get("group") or "")
        row.setdefault("status", "ok")
        row.update(machine=machine_label(info), host=info.get("node", ""), commit=commit[:12], file=path.name)
        rows.append(row)
    return pd.DataFrame(rows)


def load(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every benchmark row of every file, one DataFrame, with `COLUMNS` first."""
    files = json_files(paths)
    if not files:
        raise FileNotFoundError("no benchmark JSON files found")
    frames = [f for f in (load_file(p) for p in files) if not f.empty]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    df["baseline"] = df["implementation"].isin(BASELINES)
    for col in ("k", "N", "side", "C", "B"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    ordered = [*COLUMNS, "baseline"]
    return df[ordered + [c for c in df.columns if c not in ordered]]
