"""``convnn-report build PATH... --out DIR`` (also ``python -m reports build ...``): read
pytest-benchmark JSON files (files, or folders searched recursively; several hosts merge into
one report with a machine column) and write:

  results.csv        the tidy DataFrame, one row per benchmark (failures included)
  ratios.csv         every ConvNN row with its time and memory ratios to the baselines
  bars.csv           issue 6's bars: measured ratio, limit, met / not met
  summary.md         the Markdown summary (tables and figure links)
  *.png              the figures
  report.html        one self-contained page with every table and figure
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reports import html, load, plots, tables


def build(paths: list[str], out: Path) -> dict[str, Path]:
    """Write the report of ``paths`` into ``out``; returns the files written by kind."""
    out.mkdir(parents=True, exist_ok=True)
    df = load.load(paths)
    ratio_table = tables.ratios(df)
    bar_table = tables.bars(ratio_table)
    written = {"csv": out / "results.csv", "ratios": out / "ratios.csv", "bars": out / "bars.csv"}
    df.to_csv(written["csv"], index=False)
    ratio_table.to_csv(written["ratios"], index=False)
    bar_table.to_csv(written["bars"], index=False)
    figures = plots.all_figures(df, ratio_table, out)
    written["markdown"] = out / "summary.md"
    written["markdown"].write_text(tables.summary_markdown(df, ratio_table, bar_table, [p.name for p in figures]), encoding="utf-8")
    intro = [
        f"{len(df)} rows from {df['file'].nunique()} file(s), machines: {', '.join(sorted(df['machine'].unique()))}.",
        "Timing: " + "; ".join(sorted(df["timer"].dropna().unique())) + ".",
        "Peak memory: " + "; ".join(sorted(df["memory_method"].dropna().unique())) + ".",
        "Every timed output was compared with a float64 gold on the same input (✓ within the SPEC §4 bound).",
    ]
    failed = df[df["status"] != "ok"]
    sections = [
        ("Issue 6 bars (ratio = ConvNN / baseline)", bar_table),
        ("Ratios to the baselines (below 1: ConvNN cheaper)", ratio_table),
        ("Failures (kept, drawn as red crosses)", failed[["machine", "implementation", "mode", "k", "side", "direction", "status", "message"]]),
        ("All rows", df[[c for c in load.COLUMNS if c not in ("timer", "memory_method", "message", "file")]]),
    ]
    for fig in figures:
        written[fig.stem] = fig
    written["html"] = html.write(out / "report.html", "ConvNN benchmark report", intro, sections, figures)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convnn-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the report from pytest-benchmark JSON files")
    b.add_argument("paths", nargs="+", help="JSON files or folders holding them")
    b.add_argument("--out", default="reports/out", help="output folder (default reports/out)")
    args = parser.parse_args(argv)
    written = build(args.paths, Path(args.out))
    for kind, path in written.items():
        print(f"{kind:>22}: {path}")
    return 0
