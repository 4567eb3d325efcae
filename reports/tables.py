"""Tables: the tidy CSV, ratios of every ConvNN row to its baselines, issue 6's bars, and the
Markdown summary (rows: configuration; columns: implementation)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

SHAPE = ["machine", "N", "side", "C", "B", "dtype", "device", "direction"]
CONFIG = ["machine", "mode", "k", "r", "side", "N", "C", "B", "dtype", "device", "direction"]


@dataclass(frozen=True)
class BaselineMatch:
    """Which baseline row a ConvNN row is compared with: ``baseline`` rows that share ``keys``
    with it, for ConvNN rows of one of ``modes``."""

    baseline: str
    modes: tuple[str, ...]
    keys: tuple[str, ...]


MATCHES = (
    BaselineMatch("conv2d", ("position",), ("mode", "k", *SHAPE)),
    BaselineMatch("conv2d-depthwise", ("position-depthwise",), ("mode", "k", *SHAPE)),
    BaselineMatch("dense-naive", ("feature",), ("mode", "k", *SHAPE)),
    BaselineMatch("sdpa", ("feature", "feature-random", "feature-grid", "hybrid", "attention", "kvt"), tuple(SHAPE)),
    BaselineMatch("sdpa-math", ("attention", "kvt"), tuple(SHAPE)),
    BaselineMatch("kvt-dense", ("kvt",), ("mode", "k", *SHAPE)),
)


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["median"].notna()]


def _baseline_rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """One row per shape for a baseline (SDPA rows are attention rows whatever their k)."""
    return ok_rows(df[df["implementation"] == name])


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Every ConvNN row with its time and peak-memory ratios to each matching baseline
    (``time/<baseline>``, ``memory/<baseline>``; below 1 means ConvNN is cheaper)."""
    convnn = ok_rows(df[~df["baseline"]]).copy()
    out = convnn[[*CONFIG, "implementation", "median", "peak_memory_bytes", "verdict"]].copy()
    for match in MATCHES:
        base = _baseline_rows(df, match.baseline)
        if base.empty:
            continue
        keys = list(match.keys)
        cols = base[[*keys, "median", "peak_memory_bytes"]].drop_duplicates(keys, keep="last")
        cols = cols.rename(columns={"median": "_t", "peak_memory_bytes": "_m"})
        merged = out.reset_index().merge(cols, on=keys, how="left").set_index("index")
        applies = merged["mode"].isin(match.modes)
        out[f"time/{match.baseline}"] = (merged["median"] / merged["_t"]).where(applies)
        out[f"memory/{match.baseline}"] = (merged["peak_memory_bytes"].astype(float) / merged["_m"].astype(float)).where(applies)
    empty = [c for c in out.columns if c.startswith(("time/", "memory/")) and out[c].isna().all()]
    return out.drop(columns=empty)


@dataclass(frozen=True)
class Bar:
    """One of issue 6's bars: the ConvNN/baseline ratio of ``metric`` must be ≤ ``limit`` on
    rows of ``mode`` at each of ``sides`` (None: every side measured), forward."""

    text: str
    mode: str
    baseline: str
    metric: str  # "time" or "memory"
    limit: float
    sides: tuple[int, ...] | None
    k: int | None = 9
    B: int = 8


BARS = (
    Bar("feature k=9 cosine ≥ 6× faster than dense-naive at 56²", "feature", "dense-naive", "time", 1 / 6, (56,)),
    Bar("feature k=9 cosine ≤ 1.2× SDPA at 32², 56², 64²", "feature", "sdpa", "time", 1.2, (32, 56, 64)),
    Bar("feature k=9 cosine ≤ 2× SDPA at 8², 16²", "feature", "sdpa", "time", 2.0, (8, 16)),
    Bar("position 3×3 ≤ 1.5× F.conv2d at 32², 56²", "position", "conv2d", "time", 1.5, (32, 56)),
    Bar("attention k=N ≤ 1.3× SDPA (math backend)", "attention", "sdpa-math", "time", 1.3, None, k=None),
    Bar("peak memory at 64² (B=16) ≤ 1/8 of dense-naive", "feature", "dense-naive", "memory", 1 / 8, (64,), B=16),
    Bar("peak memory at 64² (B=16) ≤ 4× SDPA", "feature", "sdpa", "memory", 4.0, (64,), B=16),
)


def bars(ratio_table: pd.DataFrame, *, C: int = 64, dtype: str = "float32") -> pd.DataFrame:
    """Issue 6's bars against the measured ratios, one row per bar, side, direction,
    implementation and machine. Forward rows are the bars; forward+backward rows are
    reported beside them against the same limit."""
    rows = []
    for bar in BARS:
        col = f"{bar.metric}/{bar.baseline}"
        sel = ratio_table[(ratio_table["mode"] == bar.mode) & (ratio_table["B"] == bar.B) & (ratio_table["C"] == C)]
        sel = sel[sel["dtype"] == dtype]
        if bar.k is not None:
            sel = sel[sel["k"] == bar.k]
        if bar.sides is not None:
            sel = sel[sel["side"].isin(bar.sides)]
        if col not in sel.columns or sel.empty:
            rows.append({"bar": bar.text, "side": None, "direction": "forward", "ratio": None, "limit": bar.limit, "met": "not measured"})
            continue
        for _, r in sel.sort_values(["machine", "direction", "side"]).iterrows():
            value = r[col]
            met = "not measured" if pd.isna(value) else ("met" if value <= bar.limit else "not met")
            rows.append({
                "bar": bar.text, "machine": r["machine"], "implementation": r["implementation"], "device": r["device"],
                "side": int(r["side"]), "direction": r["direction"], "ratio": value, "limit": bar.limit, "met": met,
            })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ Markdown


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(df: pd.DataFrame, columns: Iterable[str] | None = None) -> str:
    """A GitHub Markdown table of ``df`` (floats to 3 significant digits)."""
    cols = list(columns) if columns is not None else list(df.columns)
    if df.empty:
        return "_(no rows)_\n"
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    body = "".join("| " + " | ".join(_fmt(r[c]) for c in cols) + " |\n" for _, r in df.iterrows())
    return head + body


def time_pivot(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Median milliseconds, rows = configuration, columns = implementation, for one mode
    (baselines that serve this mode included at the same shape)."""
    own = df[(df["mode"] == mode) & (df["status"] == "ok")]
    if own.empty:
        return pd.DataFrame()
    serving = [m.baseline for m in MATCHES if mode in m.modes]
    extra = df[df["implementation"].isin(serving) & (df["mode"] != mode) & (df["status"] == "ok")]
    shapes = own[SHAPE].drop_duplicates()
    extra = extra.merge(shapes, on=SHAPE)
    rows = []
    for keys, group in own.groupby(CONFIG, dropna=False):
        rec = dict(zip(CONFIG, keys))
        for _, r in group.iterrows():
            rec[r["implementation"]] = r["median"] * 1e3
        match = extra
        for c in SHAPE:
            match = match[match[c] == rec[c]]
        for _, r in match.iterrows():
            rec.setdefault(r["implementation"], r["median"] * 1e3)
        rows.append(rec)
    out = pd.DataFrame(rows)
    return out.drop(columns=[c for c in ("r",) if c in out and out[c].isna().all()])


def summary_markdown(df: pd.DataFrame, ratio_table: pd.DataFrame, bar_table: pd.DataFrame, figures: list[str]) -> str:
    """The report's Markdown page."""
    lines = ["# ConvNN benchmark report", ""]
    lines += ["## Machines", ""]
    for machine, g in df.groupby("machine"):
        commits = ", ".join(sorted({c for c in g["commit"].dropna() if c}))
        lines.append(f"- **{machine}**: {len(g)} rows, devices {', '.join(sorted(g['device'].dropna().unique()))}, commit {commits or '?'}")
    methods = sorted({m for m in df["memory_method"].dropna().unique()})
    timers = sorted({t for t in df["timer"].dropna().unique()})
    lines += ["", "Timing: " + "; ".join(timers or ["–"]) + ". Median and IQR per case; rows with IQR/median > 10% are flagged.",
              "Peak memory: " + "; ".join(methods or ["–"]) + ".",
              "Correctness: every timed output is compared with the float64 gold on the same input (SPEC §4 bound); ✓/✗ per row.", ""]
    status = df["status"].value_counts().to_dict()
    verdicts = df["verdict"].value_counts().to_dict()
    lines += [f"Rows: {len(df)}; status {status}; verdicts {verdicts}.", ""]
    lines += ["## Issue 6 bars", "", "Ratio = ConvNN / baseline (time or peak memory); forward rows are the bars, forward+backward rows are reported beside them.", ""]
    several = df["machine"].nunique() > 1
    bar_cols = ("bar", "machine" if several else "", "implementation", "side", "direction", "ratio", "limit", "met")
    lines.append(markdown_table(bar_table, [c for c in bar_cols if c in bar_table.columns]))
    lines += ["## Ratios to the baselines", "", "Below 1: ConvNN is cheaper than the baseline.", ""]
    ratio_cols = [c for c in ratio_table.columns if c.startswith(("time/", "memory/"))]
    show = ["machine" if several else "", "implementation", "mode", "k", "side", "B", "dtype", "direction", "median_ms", *ratio_cols]
    shown = ratio_table.assign(median_ms=ratio_table["median"] * 1e3).sort_values(["machine", "mode", "direction", "k", "side"])
    lines.append(markdown_table(shown, [c for c in show if c in shown.columns]))
    lines += ["## Median time (ms) by configuration", ""]
    for mode in sorted(df.loc[~df["baseline"], "mode"].dropna().unique()):
        pivot = time_pivot(df, mode)
        if pivot.empty:
            continue
        drop = ["mode"] + ([] if several else ["machine"])
        lines += [f"### {mode}", "", markdown_table(pivot.drop(columns=drop))]
    failed = df[df["status"] != "ok"]
    lines += ["## Failures (kept as rows, drawn as marked points)", ""]
    lines.append(markdown_table(failed, ["machine", "implementation", "mode", "k", "side", "B", "dtype", "direction", "status", "message"]))
    noisy = df[df["warning"].notna() & (df["warning"] != "")]
    lines += ["## Noisy rows (IQR/median > 10%)", ""]
    noisy = noisy.assign(median_ms=noisy["median"] * 1e3, iqr_ms=noisy["iqr"] * 1e3)
    lines.append(markdown_table(noisy, ["machine", "implementation", "mode", "k", "side", "direction", "median_ms", "iqr_ms", "warning"]))
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)
