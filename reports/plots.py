"""Figures (matplotlib, Agg backend, PNG). Each function takes the results and a path, draws one
figure and returns the path, or None when the data hold nothing to draw.

- One line per implementation, mode and dtype: dtypes get panels of their own (resolution
  figures) or line styles of their own (time vs k, crossover); nothing joins rows of different
  dtypes, batch sizes or directions.
- Which families are drawn and which ratios are crossovers come from the results' bars and
  baselines; without them, every family measured at two sizes or more.
- Failed rows are never dropped: a wrong result (it has a time) is a red cross on its line; a
  row without a value (out of memory, time limit, error, crash) is a red marker on the top edge,
  one legend entry per status. Legends sit outside the axes, so labels never cover data.
- Every point shows its spread: times a band from the first to the third quartile of the row's
  rounds (median ± IQR/2 for results that recorded no quartiles), ratios an error bar over the
  95 % interval of their interleaved pairs (none for an unpaired ratio, drawn hollow). Memory is
  a count, not a sample, and has no interval.
- Every figure carries a footer: the commit(s) measured and the command that drew it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from reports.load import Results

DTYPE_STYLE = {"float32": "-", "bfloat16": "--", "float16": ":", "float64": "-."}
STATUS_MARKERS = {"oom": "v", "time_limit": "s", "error": "D", "crashed": "P", "wrong": "X"}
FAIL: dict[str, Any] = {"color": "crimson", "s": 60, "zorder": 6, "linewidths": 0.6, "edgecolors": "black"}
COLORS = [plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("Dark2")(i) for i in range(8)]


def _style(dtype: str) -> str:
    return DTYPE_STYLE.get(dtype, "-.")


def _legend(ax: plt.Axes, **kw: Any) -> None:
    """The legend outside the axes, on the right; plain tick labels on log axes."""
    _plain_ticks(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, handlelength=3.2, **kw)


def _plain_ticks(ax: plt.Axes) -> None:
    """Log axes labelled 0.1, 1, 10 rather than 10^-1...; minor ticks labelled only where fewer
    than two powers of ten fall inside an axis (with one, only at 2× and 5×), so they never
    crowd."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or lo <= 0:
            continue
        decades = math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) + 1
        axis.set_major_formatter(plain)
        if decades >= 2:
            axis.set_minor_formatter(NullFormatter())
        elif decades == 1:
            axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        else:
            axis.set_minor_formatter(plain)


def _finish(fig: plt.Figure, path: Path, footer: str) -> Path:
    fig.text(0.0, -0.01, footer, fontsize=6.5, color="dimgray", ha="left", va="top")
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Description": footer})
    plt.close(fig)
    return path


def _mark_failures(ax: plt.Axes, failed: pd.DataFrame, x: str, y: str, what: str) -> None:
    """Red crosses for wrong rows at their value; other failures on the top edge by status."""
    if failed.empty:
        return
    timed = failed[(failed["status"] == "wrong") & failed[y].notna() & (failed[y] > 0)]
    if not timed.empty:
        ax.scatter(timed[x], timed[y], marker="X", label="✗ wrong result (measured)", **FAIL)
    rest = failed.drop(index=timed.index)
    top = ax.get_ylim()[1]
    for status, s in rest.groupby("status"):
        ax.scatter(s[x], [top] * len(s), marker=STATUS_MARKERS.get(str(status), "X"), clip_on=False,
                   label=f"{status} (no {what}; on the top edge)", **FAIL)


def _time_spread(g: pd.DataFrame, scale: float = 1e3) -> pd.DataFrame:
    """``lo``/``hi``: each row's first and third quartile of its rounds times ``scale`` (median
    ± IQR/2 where the quartiles were not recorded)."""
    q1 = pd.to_numeric(g["q1"], errors="coerce") if "q1" in g else pd.Series(np.nan, index=g.index)
    q3 = pd.to_numeric(g["q3"], errors="coerce") if "q3" in g else pd.Series(np.nan, index=g.index)
    half = pd.to_numeric(g["iqr"], errors="coerce") / 2
    return g.assign(lo=q1.fillna(g["median"] - half) * scale, hi=q3.fillna(g["median"] + half) * scale)


def _draw_series(ax: plt.Axes, g: pd.DataFrame, x: str, y: str, keys: list[str], label: Any, *,
                 fit: bool = False, what: str = "value", colors: dict[tuple[Any, ...], Any] | None = None,
                 min_points: int = 1, band: tuple[str, str] | None = None) -> None:
    """One line per group of ``keys`` (colour from ``colors`` by group, else by order): ok and
    wrong rows with a value, in x order, groups with fewer than ``min_points`` x values left
    out; wrong rows and failures marked; ``band``: the columns of each point's low and high
    end, drawn as a shaded band around the line."""
    has = g[g["status"].isin(["ok", "wrong"]) & g[y].notna() & (g[y] > 0)]
    for i, (key, s) in enumerate(has.groupby(keys, dropna=False)):
        key = key if isinstance(key, tuple) else (key,)
        if s[x].nunique() < min_points:
            continue
        s = s.sort_values(x)
        text = label(dict(zip(keys, key)))
        xs, ys = s[x].to_numpy(float), s[y].to_numpy(float)
        if fit and s[x].nunique() >= 2:
            text += f", ∝ N^{np.polyfit(np.log(xs), np.log(ys), 1)[0]:.2f}"
        dashed = bool(s["baseline"].eq(True).all())
        color = (colors or {}).get(key, COLORS[i % len(COLORS)])
        ax.plot(xs, ys, "--" if dashed else "-", marker="o", ms=3.5, lw=1.3, color=color, label=text)
        if band is not None and s[band[0]].notna().any():
            ax.fill_between(xs, s[band[0]].to_numpy(float), s[band[1]].to_numpy(float), color=color, alpha=0.18, lw=0)
    _mark_failures(ax, g[g["status"] != "ok"], x, y, what)


def _family_colors(g: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], Any]:
    """One colour per family over every panel of a figure (ConvNN families first)."""
    families = g.sort_values(["baseline", "implementation", "mode"])[keys].drop_duplicates()
    return {tuple(r): COLORS[i % len(COLORS)] for i, r in enumerate(families.itertuples(index=False))}


def _family_rows(results: Results, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the resolution figures: the families the time bars compare (the ConvNN mode at
    the bar's k, the baseline at the same k where it is matched on k), or, without bars, every
    family; at the most common batch size."""
    time_bars = [b for b in results.bars if b["metric"] == "time"]
    if time_bars:
        keep = pd.Series(False, index=df.index)
        for bar in time_bars:
            k_ok = df["k"] == bar["k"] if bar.get("k") is not None else df["k"] == df["N"]
            keep |= df["baseline"].eq(False) & (df["mode"] == bar["mode"]) & k_ok
            on_k = "k" in results.baselines.get(bar["baseline"], {}).get("match", [])
            keep |= df["baseline"].eq(True) & (df["implementation"] == bar["baseline"]) & (k_ok if on_k else True)
        g = df[keep]
    else:
        g = df
    if g.empty:
        return g
    b = g["B"].mode().iloc[0]
    return g[g["B"] == b]


def _family_label(row: dict[str, Any], several_machines: bool) -> str:
    k = row.get("_klabel", "")
    text = f"{row['implementation']} ({row['mode']}{', ' + k if k else ''})"
    return f"{text} · {row['machine']}" if several_machines else text


def _with_k_label(g: pd.DataFrame) -> pd.DataFrame:
    return g.assign(_klabel=np.where(g["k"] == g["N"], "k=N", "k=" + g["k"].astype("Int64").astype(str)))


def _panel_grid(n: int, width: float, height: float, cols: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def time_vs_resolution(results: Results, path: Path, footer: str) -> Path | None:
    """Log-log median time against N with each line's fitted exponent; one panel per dtype and
    direction."""
    g = _family_rows(results, results.df)
    if g.empty:
        return None
    g = _with_k_label(g)
    panels = [(d, t) for t in _dtypes(g) for d in ("forward", "forward+backward")
              if not g[(g["direction"] == d) & (g["dtype"] == t)].empty]
    fig, axes = _panel_grid(len(panels), 7.4, 4.4, 2)
    several = g["machine"].nunique() > 1
    keys = ["machine", "implementation", "mode", "_klabel"]
    colors = _family_colors(g, keys)
    for ax, (direction, dtype) in zip(axes, panels):
        s = _time_spread(g[(g["direction"] == direction) & (g["dtype"] == dtype)].assign(ms=lambda t: t["median"] * 1e3))
        ax.set(xscale="log", yscale="log")
        _draw_series(ax, s, "N", "ms", keys, lambda r: _family_label(r, several), fit=True, what="time",
                     colors=colors, min_points=2, band=("lo", "hi"))
        ax.set(xlabel="N = H·W tokens", ylabel="median time (ms; band: quartiles)", title=f"{direction}, {dtype}, B={int(s['B'].iloc[0])}")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    fig.suptitle("time vs resolution (dashed: baselines)")
    return _finish(fig, path, footer)


def memory_vs_resolution(results: Results, path: Path, footer: str) -> Path | None:
    """Peak tensor memory and process RSS growth against N (log-log), forward; one row of
    panels per dtype."""
    g = _family_rows(results, results.df)
    g = g[g["direction"] == "forward"] if not g.empty else g
    if g.empty or g["peak_memory_bytes"].notna().sum() == 0:
        return None
    g = _with_k_label(g).assign(tensor_mib=lambda t: t["peak_memory_bytes"] / 2**20,
                                rss_mib=lambda t: t["rss_growth_bytes"] / 2**20)
    metrics = [("tensor_mib", "peak tensor memory (MiB)")]
    if g["rss_mib"].notna().any():
        metrics.append(("rss_mib", "process RSS growth (MiB; 0 is not drawn)"))
    panels = [(t, m) for t in _dtypes(g) for m in metrics]
    fig, axes = _panel_grid(len(panels), 7.4, 4.4, len(metrics))
    several = g["machine"].nunique() > 1
    keys = ["machine", "implementation", "mode", "_klabel"]
    colors = _family_colors(g, keys)
    for ax, (dtype, (col, ylabel)) in zip(axes, panels):
        s = g[g["dtype"] == dtype]
        ax.set(xscale="log", yscale="log")
        _draw_series(ax, s, "N", col, keys, lambda r: _family_label(r, several), fit=col == "tensor_mib", what="memory",
                     colors=colors, min_points=2)
        ax.set(xlabel="N = H·W tokens", ylabel=ylabel, title=f"{ylabel.split(' (')[0]}, forward, {dtype}, B={int(s['B'].iloc[0])}")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    fig.suptitle("memory vs resolution (dashed: baselines)")
    return _finish(fig, path, footer)


def time_vs_k(results: Results, path: Path, footer: str) -> Path | None:
    """Median time against k, forward, for each mode whose k varies at one resolution; one line
    per implementation and dtype (line style: dtype)."""
    df = results.df
    fwd = df[(df["direction"] == "forward") & (df["k"] < df["N"])]
    panels = []
    for mode in sorted(fwd["mode"].dropna().unique()):
        g = fwd[fwd["mode"] == mode]
        counts = g.groupby("side")["k"].nunique()
        if not counts.empty and counts.max() >= 2:
            side = counts.idxmax()
            g = g[g["side"] == side]
            panels.append((mode, side, g[g["B"] == g["B"].mode().iloc[0]]))
    if not panels:
        return None
    fig, axes = _panel_grid(len(panels), 6.6, 4.0, 2)
    several = df["machine"].nunique() > 1
    for ax, (mode, side, g) in zip(axes, panels):
        g = _time_spread(g.assign(ms=g["median"] * 1e3))
        ax.set(xscale="log", yscale="log")
        has = g[g["status"].isin(["ok", "wrong"]) & g["ms"].notna()]
        for i, ((machine, impl), s) in enumerate(has.groupby(["machine", "implementation"])):
            for dtype, t in s.groupby("dtype"):
                t = t.sort_values("k")
                label = f"{impl}, {dtype}" + (f" · {machine}" if several else "")
                color = COLORS[i % len(COLORS)]
                ax.plot(t["k"], t["ms"], _style(str(dtype)), marker="o", ms=3.5, color=color, label=label)
                ax.fill_between(t["k"].to_numpy(float), t["lo"].to_numpy(float), t["hi"].to_numpy(float), color=color,
                                alpha=0.18, lw=0)
        _mark_failures(ax, g[g["status"] != "ok"], "k", "ms", "time")
        ax.xaxis.set_major_locator(FixedLocator(sorted(g["k"].dropna().unique())))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.set(xlabel="k (neighbours)", ylabel="median time (ms; band: quartiles)", title=f"{mode}: time vs k at {side}×{side}, B={int(g['B'].iloc[0])}")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    return _finish(fig, path, footer)


def roofline(results: Results, path: Path, footer: str) -> Path | None:
    """Achieved GFLOP/s (total FLOPs / median) against arithmetic intensity (FLOPs per compulsory
    byte): colour = implementation and mode, marker = dtype; dashed lines: the measured matmul
    peak of each device and dtype."""
    df = results.df
    g = df[df["gflops"].notna() & df["arithmetic_intensity"].notna()]
    if g.empty:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 5.4), layout="constrained")
    ax.set(xscale="log", yscale="log")
    dtypes = _dtypes(g)
    markers = dict(zip(dtypes, "o^sDv"))
    color_handles = []
    for i, ((impl, mode), s) in enumerate(g[g["status"] == "ok"].groupby(["implementation", "mode"])):
        color = COLORS[i % len(COLORS)]
        for dtype, t in s.groupby("dtype"):
            ax.scatter(t["arithmetic_intensity"], t["gflops"], s=20, alpha=0.85, marker=markers.get(str(dtype), "o"), color=color)
        color_handles.append(Line2D([], [], ls="", marker="o", color=color, label=f"{impl} ({mode})"))
    several = g["machine"].nunique() > 1
    dtype_handles = []
    peaks = g.dropna(subset=["peak_gflops"]).groupby(["machine", "device", "dtype"])["peak_gflops"].first()
    for dtype in dtypes:
        text = str(dtype)
        for (machine, device, t), peak in peaks.items():
            if t == dtype:
                ax.axhline(peak, ls=_style(str(dtype)), lw=1, color="gray")
                text += f"; matmul peak {peak:,.0f} GFLOP/s ({machine if several else device})"
        dtype_handles.append(Line2D([], [], ls=_style(str(dtype)), color="gray", marker=markers.get(str(dtype), "o"), label=text))
    _mark_failures(ax, df[(df["status"] != "ok") & df["arithmetic_intensity"].notna()], "arithmetic_intensity", "gflops", "GFLOP/s")
    fail_handles, _ = ax.get_legend_handles_labels()
    ax.set(xlabel="arithmetic intensity (FLOP / compulsory byte)", ylabel="achieved GFLOP/s (total FLOPs)",
           title="GFLOP/s vs arithmetic intensity")
    ax.grid(True, which="both", alpha=0.3)
    _plain_ticks(ax)
    first = ax.legend(handles=color_handles + fail_handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.add_artist(first)
    ax.legend(handles=dtype_handles, fontsize=7, loc="lower left", bbox_to_anchor=(1.02, 0.0), borderaxespad=0.0, title="dtype (marker)",
              title_fontsize=7)
    return _finish(fig, path, footer)


def crossover(results: Results, ratio_table: pd.DataFrame, path: Path, footer: str) -> Path | None:
    """Time of ConvNN over its baseline against N, one panel per (mode, baseline) pair the time
    bars compare, one line per implementation, dtype and direction; 1 is the crossover, and the
    N where a line crosses it is in its legend."""
    pairs = list(dict.fromkeys((b["mode"], b["baseline"], b.get("k"), b["B"]) for b in results.bars if b["metric"] == "time"))
    panels = []
    for mode, baseline, k, b in pairs:
        col = f"time/{baseline}"
        if col not in ratio_table:
            continue
        bar = {"mode": mode, "k": k, "B": b}
        g = ratio_table[(ratio_table["mode"] == mode) & (ratio_table["B"] == b) & ratio_table[col].notna()]
        g = g[g["k"] == k] if k is not None else g[g["k"] == g["N"]]
        if not g.empty and g.groupby(["machine", "implementation", "dtype", "direction"])["N"].nunique().max() >= 2:
            panels.append((bar, baseline, col, g))
    if not panels:
        return None
    fig, axes = _panel_grid(len(panels), 6.8, 4.0, 2)
    several = ratio_table["machine"].nunique() > 1
    df = results.df
    lines = [(i, t, d) for i in sorted(ratio_table["implementation"].unique()) for t in _dtypes(ratio_table)
             for d in ("forward", "forward+backward")]
    for ax, (bar, baseline, col, g) in zip(axes, panels):
        ax.set(xscale="log", yscale="log")
        ax.axhline(1.0, color="black", lw=1)
        for (machine, impl, dtype, direction), s in g.groupby(["machine", "implementation", "dtype", "direction"]):
            if s["N"].nunique() < 2:
                continue
            s = s.sort_values("N")
            label = f"{impl}, {dtype}, {direction}" + (f" · {machine}" if several else "")
            crossings = _crossings(s["N"].to_numpy(float), s[col].to_numpy(float))
            if crossings:
                label += ", = 1 at N≈" + ", ".join(f"{n:,.0f}" for n in crossings)
            color = COLORS[lines.index((impl, dtype, direction)) % len(COLORS)]
            marker = "o" if direction == "forward" else "s"
            ax.plot(s["N"], s[col], _style(str(dtype)), marker=marker, ms=3.5, color=color, label=label)
            low, high = f"{col} low", f"{col} high"
            if low in s and s[low].notna().any():
                has = s[s[low].notna()]
                err = np.vstack([(has[col] - has[low]).clip(lower=0), (has[high] - has[col]).clip(lower=0)])
                ax.errorbar(has["N"], has[col], yerr=err, fmt="none", ecolor=color, elinewidth=1.0, capsize=2.5)
            bare = s[s[low].isna()] if low in s else s
            if not bare.empty:  # unpaired ratios (older results): hollow, no interval
                ax.scatter(bare["N"], bare[col], marker=marker, s=28, facecolors="white", edgecolors=[color], zorder=5)
            for n in crossings:
                ax.axvline(n, color=color, lw=0.7, alpha=0.5)
        failed = df[(df["mode"] == bar["mode"]) & df["baseline"].eq(False) & (df["status"] != "ok") & (df["B"] == bar["B"])]
        _mark_failures(ax, failed.assign(ratio=math.nan), "N", "ratio", "ratio")
        lo, hi = ax.get_ylim()
        ax.axhspan(min(lo, 1.0), 1.0, color="green", alpha=0.07, label="below 1: ConvNN cheaper")
        ax.set_ylim(lo, hi)
        k = "k=N" if bar["k"] is None else f"k={bar['k']}"
        ax.set(xlabel="N = H·W tokens", ylabel=f"time / {baseline} (bars: 95% interval of the pairs)", title=f"{bar['mode']} ({k}, B={bar['B']}) / {baseline}")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    return _finish(fig, path, footer)


def _dtypes(g: pd.DataFrame) -> list[str]:
    order = list(DTYPE_STYLE)
    return sorted({str(t) for t in g["dtype"].dropna()}, key=lambda t: (order.index(t) if t in order else 99, t))


def _crossings(n: np.ndarray, ratio: np.ndarray) -> list[float]:
    """N where the ratio crosses 1, interpolated linearly in log-log between measured points."""
    out = []
    for (n0, r0), (n1, r1) in zip(zip(n, ratio), zip(n[1:], ratio[1:])):
        if r0 > 0 and r1 > 0 and (r0 - 1) * (r1 - 1) < 0:
            t = math.log(r0) / (math.log(r0) - math.log(r1))
            out.append(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return out


def all_figures(results: Results, ratio_table: pd.DataFrame, out: Path, footer: str) -> list[Path]:
    """Every figure that has data, written into ``out``. Text from the results (names, labels,
    the command) is drawn as it is: ``$`` never starts mathtext."""
    with plt.rc_context({"text.parse_math": False}):
        made = [
            time_vs_k(results, out / "time_vs_k.png", footer),
            time_vs_resolution(results, out / "time_vs_resolution.png", footer),
            memory_vs_resolution(results, out / "memory_vs_resolution.png", footer),
            roofline(results, out / "roofline.png", footer),
            crossover(results, ratio_table, out / "crossover.png", footer),
        ]
    return [p for p in made if p is not None]

