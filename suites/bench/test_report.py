"""The report side, on synthetic results that carry the sweep's own definitions (the baselines
and bars of the ``default`` preset, as the sweep writes them): two machines merge into one
report with a machine column; bars, wins and losses read those definitions; every ✗ row is
explained; a journal without its JSON is read; a missing result says what to run; every file
says it is generated; figures draw one line per dtype."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib")

from reports import cli, load, plots, tables
from suites.bench import __main__ as runner
from suites.bench.presets import definitions, get_preset

DEFAULT = get_preset("default")
DEFS = definitions(DEFAULT, DEFAULT.cases("cpu"))


def _row(impl: str, mode: str, k: int, side: int, median: float | None, memory: int, status: str = "ok",
         direction: str = "forward", B: int = 8, dtype: str = "float32", device: str = "cpu", **extra: Any) -> dict:
    info = {
        "implementation": impl, "mode": mode, "k": k, "N": side * side, "side": side, "C": 64, "B": B,
        "dtype": dtype, "device": device, "direction": direction, "r": None, "status": status,
        "message": "" if status == "ok" else "CUDA out of memory", "median": median, "iqr": None if median is None else median * 0.01,
        "peak_memory_bytes": memory, "rss_start_bytes": 10 * 2**20, "rss_peak_bytes": 10 * 2**20 + 3 * memory,
        "useful_flops": 1e9, "total_flops": 2e9, "gflops": None if median is None else 2 / median,
        "peak_gflops": 50.0, "peak_fraction": None, "arithmetic_intensity": 10.0 * side, "verdict": "✓" if status == "ok" else None,
        "timer": "perf_counter per call", "memory_method": "synthetic", "backend": "flash_attention" if impl == "sdpa" else "",
        **extra,
    }
    case = f"{impl}-{mode}-k{k}-{side}-{direction}-B{B}-{dtype}"
    stats = None if median is None else {"median": median, "iqr": median * 0.01, "rounds": 5}
    return {"group": mode, "name": f"test_bench[{case}]", "param": case, "params": {"case": case}, "extra_info": info, "stats": stats}


def _rows(scale: float = 1.0, dtype: str = "float32") -> list[dict]:
    rows = []
    for side in (8, 16, 32, 56, 64):
        n = side * side
        rows += [
            _row("reference", "feature", 9, side, 1e-6 * n * scale, 100 * n, dtype=dtype),
            _row("sdpa", "attention", n, side, 1e-7 * n**1.5 * scale, 50 * n, dtype=dtype),
            _row("sdpa-math", "attention", n, side, 3e-7 * n**1.5 * scale, 500 * n, dtype=dtype),
            _row("reference", "attention", n, side, 2e-7 * n**1.5 * scale, 80 * n, dtype=dtype),
            _row("reference", "position", 9, side, 2e-6 * n * scale, 10 * n, dtype=dtype),
            _row("conv2d", "position", 9, side, 1e-6 * n * scale, 10 * n, dtype=dtype),
            _row("dense-naive", "feature", 9, side, 1e-5 * n * scale, 4000 * n, dtype=dtype),
        ]
    rows.append(_row("reference", "feature", 9, 64, 1e-3, 400_000, B=16, dtype=dtype))
    rows.append(_row("dense-naive", "feature", 9, 64, 1e-2, 8_000_000, B=16, dtype=dtype))
    rows.append(_row("sdpa", "attention", 4096, 64, 1e-4, 200_000, B=16, dtype=dtype))
    return _with_pairs(rows)


def _with_pairs(rows: list[dict], spread: float = 0.05, n: int = 20) -> list[dict]:
    """The interleaved pairs the sweep records on each ConvNN row: for every baseline row it is
    divided by, a median equal to the medians' ratio and an interval of +-``spread``."""
    baselines = {b["name"]: b for b in DEFS["baselines"]}
    infos = [r["extra_info"] for r in rows]
    for info in infos:
        if info["implementation"] in baselines or info["median"] is None:
            continue
        pairs = {}
        for other in infos:
            b = baselines.get(other["implementation"])
            if b is None or other["median"] is None or info["mode"] not in b["compared_with"]:
                continue
            if all(info.get(f) == other.get(f) for f in b["match"]):
                ratio = info["median"] / other["median"]
                pairs[b["name"]] = {"median": ratio, "low": ratio * (1 - spread), "high": ratio * (1 + spread), "n": n,
                                    "others_cores": 0.0}
        info["pairs"] = pairs
    return rows


def _doc(node: str, rows: list[dict], *, with_definitions: bool = True, notes: list[dict] | None = None) -> dict:
    section: dict[str, Any] = {"preset": "default", "command": "python -m suites.bench --preset default --out results/bench"}
    if with_definitions:
        section.update(DEFS)
    if notes:
        section["notes"] = notes
    return {"generated_by": "test", "machine_info": {"node": node, "cpu_model": f"{node}-cpu", "torch_threads": 2, "gpus": []},
            "commit_info": {"id": "0123456789abcdef"}, "benchmarks": rows, "version": "5.3.1", "convnn_bench": section}


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_two_machines_merge_into_one_report_with_a_machine_column(tmp_path: Path) -> None:
    """Two files from different hosts give one DataFrame, one report, a machine column; the
    OOM row is kept; ratios are computed within each machine, from the files' baselines."""
    a = _write(tmp_path / "a.json", _doc("host-a", [*_rows(1.0), _row("dense-naive", "feature", 9, 128, None, 0, status="oom")]))
    _write(tmp_path / "b.json", _doc("host-b", _rows(2.0)))
    results = load.load([a, tmp_path / "b.json"])
    df = results.df
    assert sorted(df["machine"].unique()) == ["host-a: host-a-cpu (2 threads)", "host-b: host-b-cpu (2 threads)"]
    assert len(df) == 2 * len(_rows()) + 1 and (df["status"] == "oom").sum() == 1
    assert set(results.baselines) == {b["name"] for b in DEFS["baselines"]}
    ratios = tables.ratios(df, results.baselines)
    feat = ratios[(ratios["mode"] == "feature") & (ratios["side"] == 32) & (ratios["B"] == 8)]
    assert len(feat) == 2  # one per machine, never crossed between machines
    assert feat["time/dense-naive"].tolist() == pytest.approx([0.1, 0.1])

    written = cli.build([str(tmp_path)], tmp_path / "out")
    merged = pd.read_csv(written["csv"], skiprows=1)
    assert merged["machine"].nunique() == 2 and "oom" in set(merged["status"])
    html = written["html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and 'src="http' not in html and "<script" not in html
    assert {"time_vs_resolution", "memory_vs_resolution", "roofline", "crossover"} <= set(written)
    for kind in ("markdown", "csv", "ratios", "bars", "html"):
        first = written[kind].read_text(encoding="utf-8").splitlines()[0]
        assert "generated by `python -m reports build" in first and "commit" in first, (kind, first)


def test_bars_and_wins_losses_read_the_sweeps_definitions() -> None:
    """A bar is met exactly when the measured ratio is within its target; wins and losses name
    attention against both SDPA backends with their ratios, faster first."""
    rows = [r["extra_info"] for r in _rows()]
    df = pd.DataFrame([{**r, "machine": "m", "commit": "", "file": "x"} for r in rows])
    df["baseline"] = df["implementation"].isin({b["name"] for b in DEFS["baselines"]})
    baselines = {b["name"]: b for b in DEFS["baselines"]}
    ratio_table = tables.ratios(df, baselines)
    bars = tables.bars(ratio_table, DEFS["bars"])
    position = bars[bars["bar"].str.startswith("position") & bars["bar"].str.endswith(", forward")].set_index("side")
    assert position.loc[32, "ratio"] == pytest.approx(2.0) and position.loc[32, "met"] == "not met"
    math_bar = bars[bars["bar"].str.startswith("attention k=N vs SDPA math") & bars["bar"].str.endswith(", forward")]
    assert (math_bar["met"] == "met").all() and math_bar["ratio"].tolist() == pytest.approx([2 / 3] * 5)
    timed = bars[bars["bar"].str.contains(", time") & bars["met"].isin(["met", "not met"])]
    assert len(timed) > 10 and (timed["pairs"] == 20).all()
    assert position.loc[32, "low"] == pytest.approx(1.9) and position.loc[32, "high"] == pytest.approx(2.1)
    lines = tables.wins_losses(df, ratio_table, DEFS["bars"])
    faster, slower = lines[0], lines[1]
    assert faster.startswith("- **ConvNN faster or leaner**") and "attention k=N vs SDPA math backend, time: 0.67×" in faster
    assert slower.startswith("- **ConvNN slower or heavier**") and "attention k=N vs fused SDPA, time: 2×" in slower
    assert "flash_attention" in slower and "position 3×3 vs F.conv2d, time: 2×" in slower


def test_every_wrong_row_is_explained_in_the_summary(tmp_path: Path) -> None:
    """A ✗ row shows its error, bound and reason: TF32 when the row says it was allowed (float32
    on CUDA), a note recorded with the results when one matches, else "not known"."""
    bad = {"verdict": "✗", "error": 1.5e-3, "bound": 1.5e-5}
    rows = [
        _row("dense-naive", "feature", 9, 32, 1e-3, 10, status="wrong", device="cuda", allow_tf32_cudnn=True,
             allow_tf32_matmul=False, **bad),
        _row("dense-naive", "feature", 9, 16, 1e-3, 10, status="wrong", dtype="bfloat16", device="cuda", **bad),
        _row("reference", "feature", 9, 16, 1e-3, 10, status="wrong", **bad),
    ]
    note = {"where": {"dtype": "bfloat16"}, "text": "a known rounding of the bf16 path"}
    _write(tmp_path / "r.json", _doc("gpu", rows, notes=[note]))
    summary = cli.build([str(tmp_path)], tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    assert "3 rows are ✗" in summary and "0.0015 | 1.5e-05 | 100 |" in summary
    assert "likely TF32: it was allowed for cuDNN convolutions" in summary
    assert "a known rounding of the bf16 path" in summary and "not known" in summary


def test_results_without_definitions_still_give_a_report_and_say_what_is_missing(tmp_path: Path) -> None:
    """A file written before baselines and bars were recorded (every case failed, too): rows,
    failures and verdicts are reported; no ratio is made up."""
    rows = [_row("dense-naive", "feature", 9, side, None, 0, status="oom") for side in (64, 128)]
    doc = _doc("gpu-host", rows, with_definitions=False)
    doc["machine_info"]["gpus"] = [{"name": "Some GPU"}]
    _write(tmp_path / "f.json", doc)
    written = cli.build([str(tmp_path)], tmp_path / "out")
    summary = written["markdown"].read_text(encoding="utf-8")
    assert summary.count("| oom |") == 2 and "gpu-host: Some GPU" in summary
    assert "Records no baselines or bars" in summary and "no bars measured" in summary
    assert pd.read_csv(written["ratios"], skiprows=1).empty


def test_a_journal_without_its_json_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A killed sweep's folder (journal, no JSON): the report reads the journal's header record
    and rows, and names the command that would write the JSON."""
    doc = _doc("host-j", _rows())
    records = [{"type": "meta", "run": "r1", **{k: doc[k] for k in ("machine_info", "commit_info", "convnn_bench")}}]
    for bench in doc["benchmarks"]:
        records += [{"type": "start", "id": bench["param"], "run": "r1"}, {"type": "row", "row": bench}]
    text = "\n".join(json.dumps(r) for r in records) + '\n{"type": "row", "ro'  # torn by the kill
    (tmp_path / "default-host-j-cpu.jsonl").write_text(text, encoding="utf-8")
    written = cli.build([str(tmp_path)], tmp_path / "out")
    assert len(pd.read_csv(written["csv"], skiprows=1)) == len(_rows())
    assert "--assemble-only" in capsys.readouterr().err
    assert "Read from the journal" in written["markdown"].read_text(encoding="utf-8")


def test_no_results_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", str(tmp_path / "nothing-here")]) == 2
    assert "make bench" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["build", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no benchmark results in" in capsys.readouterr().err


def test_figures_draw_one_line_per_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With float32 and bfloat16 rows, no drawn line mixes dtypes: resolution figures get a
    panel per dtype, crossover lines name their dtype, and every line runs in N order."""
    _write(tmp_path / "r.json", _doc("m", [*_rows(1.0, "float32"), *_rows(0.5, "bfloat16")]))
    figures: dict[str, Any] = {}

    def keep(fig: Any, path: Path, footer: str) -> Path:
        figures[path.stem] = fig
        return path

    monkeypatch.setattr(plots, "_finish", keep)
    results = load.load([tmp_path])
    plots.all_figures(results, tables.ratios(results.df, results.baselines), tmp_path, "footer")
    titles = [ax.get_title() for ax in figures["time_vs_resolution"].axes if ax.get_visible()]
    assert any("float32" in t for t in titles) and any("bfloat16" in t for t in titles)
    for ax in figures["crossover"].axes:
        for line in ax.get_lines():
            label = str(line.get_label())
            if label.startswith("reference"):
                assert ("float32" in label) != ("bfloat16" in label), label
                xs = list(line.get_xdata())
                assert xs == sorted(xs), label


def test_annotate_adds_definitions_and_notes_and_keeps_rows(tmp_path: Path) -> None:
    """``--annotate`` writes the preset's baselines and bars and the notes into an old results
    file, says so, and leaves its rows as they were."""
    path = _write(tmp_path / "old.json", {"machine_info": {"node": "h"}, "commit_info": {}, "benchmarks": _rows()})
    runner.main(["--preset", "default", "--annotate", str(path), "--note", "implementation=dense-naive,dtype=float32: why"])
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert path.read_text(encoding="utf-8").startswith('{"generated_by": ')
    assert doc["benchmarks"] == _rows()
    section = doc["convnn_bench"]
    assert section["bars"] == DEFS["bars"] and "added after the run" in section["annotated"]["what"]
    assert section["notes"] == [{"where": {"implementation": "dense-naive", "dtype": "float32"}, "text": "why"}]
