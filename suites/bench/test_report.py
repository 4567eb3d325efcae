"""The report side: synthetic pytest-benchmark JSON from two machines merges into one report
with a machine column; failures stay rows; the HTML page is self-contained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib")

from reports import cli, load, tables


def _row(impl: str, mode: str, k: int, side: int, median: float | None, memory: int, status: str = "ok", direction: str = "forward", B: int = 8) -> dict:
    info = {
        "implementation": impl, "mode": mode, "k": k, "N": side * side, "side": side, "C": 64, "B": B,
        "dtype": "float32", "device": "cpu", "direction": direction, "r": None, "status": status,
        "message": "" if status == "ok" else "CUDA out of memory", "median": median, "iqr": None if median is None else median * 0.01,
        "peak_memory_bytes": memory, "useful_flops": 1e9, "total_flops": 2e9, "gflops": None if median is None else 2 / median,
        "peak_gflops": 50.0, "peak_fraction": None, "arithmetic_intensity": 10.0 * side, "verdict": "✓" if status == "ok" else None,
        "timer": "perf_counter per call", "memory_method": "synthetic",
    }
    case = f"{impl}-{mode}-k{k}-{side}-{direction}-B{B}"
    stats = None if median is None else {"median": median, "iqr": median * 0.01, "rounds": 5}
    return {"group": mode, "name": f"test_bench[{case}]", "param": case, "params": {"case": case}, "extra_info": info, "stats": stats}


def _file(path: Path, node: str, scale: float, with_failure: bool) -> Path:
    rows = []
    for side in (8, 32, 56, 64):
        n = side * side
        rows += [
            _row("reference", "feature", 9, side, 1e-6 * n * scale, 100 * n),
            _row("sdpa", "attention", n, side, 1e-7 * n**1.5 * scale, 50 * n),
            _row("reference", "position", 9, side, 2e-6 * n * scale, 10 * n),
            _row("conv2d", "position", 9, side, 1e-6 * n * scale, 10 * n),
            _row("dense-naive", "feature", 9, side, 1e-5 * n * scale, 4000 * n),
        ]
    rows.append(_row("reference", "feature", 9, 64, 1e-3, 400_000, B=16))
    rows.append(_row("dense-naive", "feature", 9, 64, 1e-2, 8_000_000, B=16))
    if with_failure:
        rows.append(_row("dense-naive", "feature", 9, 128, None, 0, status="oom"))
    doc = {"machine_info": {"node": node, "cpu_model": f"{node}-cpu", "torch_threads": 2, "gpus": []},
           "commit_info": {"id": "0123456789abcdef"}, "benchmarks": rows, "version": "5.3.1"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_two_machines_merge_into_one_report_with_a_machine_column(tmp_path: Path) -> None:
    """Two files from different hosts give one DataFrame, one report, a machine column; the
    OOM row is kept; ratios are computed within each machine."""
    a = _file(tmp_path / "a.json", "host-a", 1.0, with_failure=True)
    b = _file(tmp_path / "b.json", "host-b", 2.0, with_failure=False)
    df = load.load([a, b])
    assert sorted(df["machine"].unique()) == ["host-a: host-a-cpu (2 threads)", "host-b: host-b-cpu (2 threads)"]
    assert len(df) == 2 * 22 + 1
    assert (df["status"] == "oom").sum() == 1
    ratios = tables.ratios(df)
    feat = ratios[(ratios["mode"] == "feature") & (ratios["side"] == 32) & (ratios["B"] == 8)]
    assert len(feat) == 2  # one per machine, never crossed between machines
    assert feat["time/dense-naive"].tolist() == pytest.approx([0.1, 0.1])

    out = tmp_path / "out"
    written = cli.build([str(tmp_path)], out)
    merged = pd.read_csv(written["csv"])
    assert merged["machine"].nunique() == 2
    assert "oom" in set(merged["status"])
    html = written["html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and 'src="http' not in html and "<script" not in html
    assert {"time_vs_resolution", "memory_vs_resolution", "roofline", "crossover"} <= set(written)


def test_bars_state_ratio_limit_and_verdict() -> None:
    """A bar is met exactly when the measured ratio is within its limit."""
    rows = [_row("reference", "position", 9, 32, 1.4e-3, 10), _row("conv2d", "position", 9, 32, 1e-3, 10),
            _row("reference", "position", 9, 56, 1.6e-3, 10), _row("conv2d", "position", 9, 56, 1e-3, 10)]
    df = pd.DataFrame([{**r["extra_info"], "machine": "m", "commit": "", "file": "x"} for r in rows])
    df["baseline"] = df["implementation"].isin(load.BASELINES)
    bars = tables.bars(tables.ratios(df))
    position = bars[bars["bar"].str.startswith("position")].set_index("side")
    assert position.loc[32, "ratio"] == pytest.approx(1.4) and position.loc[32, "met"] == "met"
    assert position.loc[56, "ratio"] == pytest.approx(1.6) and position.loc[56, "met"] == "not met"
    assert (bars[bars["bar"].str.startswith("attention")]["met"] == "not measured").all()


def test_a_sweep_of_failures_only_still_gives_a_report(tmp_path: Path) -> None:
    """A host where every case failed (e.g. all out of memory) yields a report listing them."""
    rows = [_row("dense-naive", "feature", 9, side, None, 0, status="oom") for side in (64, 128)]
    doc = {"machine_info": {"node": "gpu-host", "gpus": [{"name": "Some GPU"}]}, "commit_info": {}, "benchmarks": rows}
    (tmp_path / "f.json").write_text(json.dumps(doc), encoding="utf-8")
    written = cli.build([str(tmp_path)], tmp_path / "out")
    summary = written["markdown"].read_text(encoding="utf-8")
    assert summary.count("| oom |") == 2
    assert "gpu-host: Some GPU" in summary
