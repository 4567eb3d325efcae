"""Figures (matplotlib, Agg backend, PNG). Each function takes the tidy DataFrame and a path,
draws one figure and returns the path, or None when the data hold nothing to draw.

Failed rows (out of memory, time limit, wrong result, error, crash) are never dropped: they
are drawn as red crosses at their x, at their measured y when they have one (a wrong result
still has a time) or on the upper edge of the axes when they have none.
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

FAIL_STYLE: dict[str, Any] = {"marker": "X", "color": "crimson", "s": 70, "zorder": 5, "linewidths": 0.5, "edgecolors": "black"}
DASHES = ["-", "--", ":", "-."]


def _series_label(impl: str, mode: str, machine: str, several_machines: bool) -> str:
    label = f"{impl} ({mode})"
    return f"{label} · {machine}" if several_machines else label


def _draw_failures(ax: plt.Axes, failed: pd.DataFrame, x: str, y: str) -> None:
    """Red crosses for failed rows: at (x, y) when y is known, else on the top edge."""
    if failed.empty:
        return
    top = ax.get_ylim()[1]
    ys = [v if pd.notna(v) and v > 0 else top for v in failed[y]]
    ax.scatter(failed[x], ys, label="failed (status ≠ ok)", **FAIL_STYLE)
    for xv, yv, status in zip(failed[x], ys, failed["status"]):
        ax.annotate(str(status), (xv, yv), textcoords="offset points", xytext=(4, -10), fontsize=7, color="crimson")


def _finish(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lines(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, scale: float = 1.0, fit: bool = False) -> None:
    """One line per (machine, implementation, mode): ok rows joined, failures crossed."""
    several = df["machine"].nunique() > 1
    machines = sorted(df["machine"].unique())
    for (machine, impl, mode), g in df.groupby(["machine", "implementation", "mode"]):
        ok = g[(g["status"] == "ok") & g[y].notna()].sort_values(x)
        if ok.empty:
            continue
        label = _series_label(impl, mode, machine, several)
        xs, ys = ok[x].to_numpy(float), ok[y].to_numpy(float) * scale
        if fit and len(ok) >= 2 and (xs > 0).all() and (ys > 0).all():
            slope = np.polyfit(np.log(xs), np.log(ys), 1)[0]
            label += f", ∝ N^{slope:.2f}"
        ax.plot(xs, ys, DASHES[machines.index(machine) % len(DASHES)], marker="o", ms=4, label=label)
    failed = df[df["status"] != "ok"].copy()
    failed[y] = failed[y] * scale
    _draw_failures(ax, failed, x, y)


def time_vs_k(df: pd.DataFrame, path: Path) -> Path | None:
    """Median time against k, forward, per mode whose k varies at one resolution."""
    fwd = df[df["direction"] == "forward"]
    panels = []
    for mode in ("feature", "position", "kvt"):
        g = fwd[fwd["mode"] == mode]
        if g.empty:
            continue
        counts = g.groupby("side")["k"].nunique()
        side = counts.idxmax()
        if counts.max() >= 2:
            panels.append((mode, side, g[g["side"] == side]))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (mode, side, g) in zip(axes[0], panels):
        _lines(ax, g, "k", "median", scale=1e3)
        ax.set(xscale="log", yscale="log", xlabel="k (neighbours)", ylabel="median time (ms)", title=f"{mode}: time vs k at {side}×{side}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, path)


def _resolution_rows(df: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Rows of the time/memory-vs-resolution figures: the 3×3 position and k = 9 feature
    families, dense attention, and their baselines, at the most common batch size."""
    g = df[df["direction"] == direction]
    keep = (g["mode"].isin(["feature", "position"]) & (g["k"] == 9)) | (g["mode"] == "attention")
    g = g[keep]
    if g.empty:
        return g
    b = g["B"].mode().iloc[0]
    return g[(g["B"] == b) & (g["dtype"] == g["dtype"].mode().iloc[0])]


def time_vs_resolution(df: pd.DataFrame, path: Path) -> Path | None:
    """Log-log time against N with each series' fitted exponent, forward and forward+backward."""
    dirs = [d for d in ("forward", "forward+backward") if not _resolution_rows(df, d).empty]
    if not dirs:
        return None
    fig, axes = plt.subplots(1, len(dirs), figsize=(6.5 * len(dirs), 4.8), squeeze=False)
    for ax, direction in zip(axes[0], dirs):
        g = _resolution_rows(df, direction)
        _lines(ax, g, "N", "median", scale=1e3, fit=True)
        ax.set(xscale="log", yscale="log", xlabel="N = H·W tokens", ylabel="median time (ms)",
               title=f"time vs resolution ({direction}, B={int(g['B'].iloc[0])}, {g['dtype'].iloc[0]})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    return _finish(fig, path)


def memory_vs_resolution(df: pd.DataFrame, path: Path) -> Path | None:
    """Peak memory against N (log-log), forward."""
    g = _resolution_rows(df, "forward")
    if g.empty or g["peak_memory_bytes"].notna().sum() == 0:
        return None
    g = g.assign(peak_mib=g["peak_memory_bytes"].astype(float) / 2**20)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    _lines(ax, g, "N", "peak_mib", fit=True)
    ax.set(xscale="log", yscale="log", xlabel="N = H·W tokens", ylabel="peak memory (MiB)",
           title=f"peak memory vs resolution (forward, B={int(g['B'].iloc[0])})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5)
    return _finish(fig, path)


def roofline(df: pd.DataFrame, path: Path) -> Path | None:
    """Achieved GFLOP/s (total FLOPs / median) against arithmetic intensity (FLOPs per
    compulsory byte), with the measured matmul peak of each device and dtype."""
    g = df[df["gflops"].notna() & df["arithmetic_intensity"].notna()]
    if g.empty:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.2))
    markers = "osD^v<>ph*P"
    colors = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, ((impl, mode), s) in enumerate(g.groupby(["implementation", "mode"])):
        ax.scatter(s["arithmetic_intensity"], s["gflops"], s=22, alpha=0.85, marker=markers[i % len(markers)],
                   color=colors[i % len(colors)], label=f"{impl} ({mode})")
    peaks = g.dropna(subset=["peak_gflops"]).groupby(["machine", "device", "dtype"])["peak_gflops"].first()
    several = g["machine"].nunique() > 1
    for (machine, device, dtype), peak in peaks.items():
        where = f"{machine}, {dtype}" if several else f"{device}, {dtype}"
        ax.axhline(peak, ls="--", lw=1, color="gray")
        ax.annotate(f"matmul peak {peak:.0f} GFLOP/s ({where})", (g["arithmetic_intensity"].min(), peak),
                    textcoords="offset points", xytext=(2, 3), fontsize=7, color="dimgray")
    failed = df[(df["status"] != "ok") & df["arithmetic_intensity"].notna()]
    if not failed.empty:
        ax.set_yscale("log")
        _draw_failures(ax, failed.assign(gflops=failed["gflops"]), "arithmetic_intensity", "gflops")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / compulsory byte)", ylabel="achieved GFLOP/s (total FLOPs)",
           title="GFLOP/s vs arithmetic intensity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, path)


def crossover(ratio_table: pd.DataFrame, df: pd.DataFrame, path: Path) -> Path | None:
    """Where ConvNN costs less than its dense counterpart: time(ConvNN-kNN)/time(SDPA) against N
    per k (feature mode), and time(position ConvNN)/time(conv2d); 1 is the crossover."""
    panels = []
    if "time/sdpa" in ratio_table:
        panels.append(("feature", "time/sdpa", "ConvNN-kNN (feature) / SDPA"))
    if "time/conv2d" in ratio_table:
        panels.append(("position", "time/conv2d", "position ConvNN / F.conv2d"))
    panels = [p for p in panels if ratio_table.loc[ratio_table["mode"] == p[0], p[1]].notna().any()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    several = ratio_table["machine"].nunique() > 1
    for ax, (mode, col, title) in zip(axes[0], panels):
        g = ratio_table[(ratio_table["mode"] == mode) & ratio_table[col].notna()]
        for i, ((machine, impl, k, direction, b), s) in enumerate(g.groupby(["machine", "implementation", "k", "direction", "B"])):
            if s["N"].nunique() < 2:
                continue  # a single resolution has no crossover; time_vs_k shows k
            s = s.sort_values("N")
            label = f"{impl} k={int(k)} {direction} B={int(b)}" + (f" · {machine}" if several else "")
            line = ax.plot(s["N"], s[col], "-o" if direction == "forward" else "--s", ms=4, label=label)[0]
            for n_cross in _crossings(s["N"].to_numpy(float), s[col].to_numpy(float)):
                ax.axvline(n_cross, color=line.get_color(), lw=0.8, alpha=0.6)
                ax.annotate(f"N≈{n_cross:.0f}", (n_cross, 1.0), textcoords="offset points", xytext=(3, 6 + 10 * (i % 4)), fontsize=7, color=line.get_color())
        failed = df[(df["mode"] == mode) & ~df["baseline"] & (df["status"] != "ok")]
        if not failed.empty:
            ax.set_yscale("log")
            _draw_failures(ax, failed.assign(ratio=math.nan), "N", "ratio")
        ax.axhline(1.0, color="black", lw=1)
        ax.fill_between([g["N"].min() * 0.8, g["N"].max() * 1.25], 0, 1, color="green", alpha=0.07)
        ax.text(0.02, 0.03, "below 1: ConvNN cheaper", transform=ax.transAxes, fontsize=8, color="darkgreen")
        ax.set(xscale="log", yscale="log", xlabel="N = H·W tokens", ylabel="time ratio", title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, path)


def _crossings(n: np.ndarray, ratio: np.ndarray) -> list[float]:
    """N where the ratio crosses 1, interpolated linearly in log-log between measured points."""
    out = []
    for (n0, r0), (n1, r1) in zip(zip(n, ratio), zip(n[1:], ratio[1:])):
        if r0 > 0 and r1 > 0 and (r0 - 1) * (r1 - 1) < 0:
            t = math.log(r0) / (math.log(r0) - math.log(r1))
            out.append(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return out


def all_figures(df: pd.DataFrame, ratio_table: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure that has data, written into ``out``."""
    made = [
        time_vs_k(df, out / "time_vs_k.png"),
        time_vs_resolution(df, out / "time_vs_resolution.png"),
        memory_vs_resolution(df, out / "memory_vs_resolution.png"),
        roofline(df, out / "roofline.png"),
        crossover(ratio_table, df, out / "crossover.png"),
    ]
    return [p for p in made if p is not None]
