"""Tables and the Markdown summary: ratios of every ConvNN row to its baselines, the bars, the
wins and losses, the wrong rows with their explanation, memory (tensor high-water mark beside
the process's peak RSS), median times per configuration. Which rows are baselines, what they
are compared with and which comparisons are bars comes from the results (`load.Results`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from reports import markdown
from reports.load import Results, Source, skipped_markdown

CONFIG = ["machine", "mode", "k", "r", "side", "N", "C", "B", "dtype", "device", "direction"]
MIB = 2**20


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["median"].notna()]


def convnn_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ConvNN implementations (files that say which rows are baselines only)."""
    return df[df["baseline"].eq(False)]


#: Fewer pairs than this never decide a bar (an order-statistics interval at 95 % needs 6).
MIN_PAIRS = 8
#: Other processes using at least this many cores during a pair set mark it busy (as the suite's
#: `host.BUSY_CORES`).
BUSY_CORES = 0.25
#: On a busy host, a verdict needs its interval this far (relative) from the target.
BUSY_MARGIN = 0.05
PAIR_FIELDS = ("low", "high", "pairs", "others_cores")


def pair_record(pairs: object, baseline: str) -> dict[str, Any] | None:
    """A row's interleaved pair record with ``baseline`` (the row's ``pairs`` field, a dict or
    its JSON), or None when the row has none."""
    if isinstance(pairs, str):
        try:
            pairs = json.loads(pairs)
        except json.JSONDecodeError:
            return None
    if not isinstance(pairs, dict):
        return None
    record = pairs.get(baseline)
    return record if isinstance(record, dict) and record.get("median") is not None else None


def ratios(df: pd.DataFrame, baselines: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Every ok ConvNN row with its time and peak-memory ratios to each baseline it is compared
    with (``time/<baseline>``, ``memory/<baseline>``; below 1: ConvNN is cheaper). A time ratio
    is the median of the row's interleaved pairs with that baseline, with its interval
    (``time/<baseline> low`` / ``high``), its pair count (``pairs``) and the cores other
    processes used meanwhile (``others_cores``). Rows without pairs (results of the older
    stopwatch) fall back to the ratio of the two rows' medians, ``pairs`` empty: such a ratio
    never decides a bar. A memory ratio divides the ConvNN row's peak by the baseline row of the
    same machine that equals it on the baseline's ``match`` fields."""
    convnn = ok_rows(convnn_rows(df))
    pairs = convnn["pairs"] if "pairs" in convnn.columns else pd.Series(None, index=convnn.index, dtype=object)
    out = convnn[[*CONFIG, "implementation", "median", "peak_memory_bytes", "verdict"]].copy()
    for name, b in baselines.items():
        base = ok_rows(df[(df["implementation"] == name) & df["baseline"].eq(True)])
        records = [pair_record(p, name) for p in pairs]
        if base.empty and not any(records):
            continue
        applies = out["mode"].isin(b["compared_with"])
        keys = ["machine", *b["match"]]
        cols = base[[*keys, "median", "peak_memory_bytes"]].drop_duplicates(keys, keep="last")
        cols = cols.rename(columns={"median": "_t", "peak_memory_bytes": "_m"})
        merged = out.reset_index().merge(cols, on=keys, how="left").set_index("index")
        unpaired = merged["median"] / merged["_t"]
        paired = pd.Series([r["median"] if r else math.nan for r in records], index=out.index, dtype=float)
        out[f"time/{name}"] = paired.where(paired.notna(), unpaired).where(applies)
        for fld, key in (("low", "low"), ("high", "high"), ("pairs", "n"), ("others_cores", "others_cores")):
            values = [r.get(key) if r else None for r in records]
            out[f"time/{name} {fld}"] = pd.Series(values, index=out.index, dtype=float).where(applies)
        out[f"memory/{name}"] = (merged["peak_memory_bytes"].astype(float) / merged["_m"].astype(float)).where(applies)
    # A ratio column with no value goes, and its interval columns with it; an unpaired ratio keeps
    # its (empty) interval columns, so a reader always finds them beside the ratio.
    empty = [c for c in out.columns if c.startswith(("time/", "memory/")) and " " not in c and out[c].isna().all()]
    companions = [f"{c} {f}" for c in empty for f in PAIR_FIELDS if f"{c} {f}" in out.columns]
    return out.drop(columns=[*empty, *companions])


def bar_rows(ratio_table: pd.DataFrame, bar: dict[str, Any]) -> pd.DataFrame:
    """The ratio-table rows a bar is read from."""
    sel = ratio_table[(ratio_table["mode"] == bar["mode"]) & (ratio_table["direction"] == bar["direction"])]
    sel = sel[(sel["B"] == bar["B"]) & (sel["C"] == bar["C"]) & (sel["dtype"] == bar["dtype"])]
    if bar.get("k") is not None:
        sel = sel[sel["k"] == bar["k"]]
    else:
        sel = sel[sel["k"] == sel["N"]]
    if bar.get("sides") is not None:
        sel = sel[sel["side"].isin(bar["sides"])]
    return sel


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def bar_verdict(metric: str, ratio: float, low: float | None, high: float | None, pairs: float | None,
                target: float | None, others_cores: float | None = None) -> tuple[str, str]:
    """A bar's verdict and its reason: ``met`` (ratio at most the target) or ``not met`` only
    when the whole interval lies on one side of the target; otherwise ``inconclusive`` with the
    reason: no pairs (a time ratio of two medians timed apart), fewer than `MIN_PAIRS` pairs,
    the interval straddling the target, or a busy host (other processes used `BUSY_CORES` or
    more while the pairs ran) with the interval within `BUSY_MARGIN` of the target. Memory
    ratios are deterministic counts: decided by their value."""
    if target is None:
        return "no target", ""
    if metric != "time":
        return ("met" if ratio <= target else "not met"), "peak memory: a count, not a timing"
    if _missing(pairs) or _missing(low) or _missing(high):
        return "inconclusive", "not paired: a ratio of two medians timed apart (results of the older stopwatch)"
    assert pairs is not None and low is not None and high is not None
    if pairs < MIN_PAIRS:
        return "inconclusive", f"too few pairs ({int(pairs)} < {MIN_PAIRS})"
    width = f"interval [{low:.3g}–{high:.3g}] over {int(pairs)} pairs"
    if low <= target < high:
        return "inconclusive", f"{width} straddles the target {target:.3g}"
    met = high <= target
    if others_cores is not None and not _missing(others_cores) and others_cores >= BUSY_CORES:
        edge = high * (1 + BUSY_MARGIN) > target if met else low * (1 - BUSY_MARGIN) <= target
        if edge:
            return "inconclusive", (f"host busy (other processes used {others_cores:.2f} cores during the pairs) and "
                                    f"{width} lies within {BUSY_MARGIN:.0%} of the target {target:.3g}")
    return ("met", f"{width} ≤ {target:.3g}") if met else ("not met", f"{width} > {target:.3g}")


def bars(ratio_table: pd.DataFrame, bar_defs: list[dict[str, Any]]) -> pd.DataFrame:
    """Each bar against the measured ratios: one row per bar, machine, implementation and side
    (``ratio``, its interval ``low``–``high`` and ``pairs``, ``target``, ``met``: met / not met
    / inconclusive / no target / not measured, and ``reason``, see `bar_verdict`)."""
    columns = ["bar", "machine", "implementation", "side", "ratio", "low", "high", "pairs", "target", "met", "reason"]
    rows = []
    for bar in bar_defs:
        col = f"{bar['metric']}/{bar['baseline']}"
        sel = bar_rows(ratio_table, bar)
        target = bar.get("target")
        if col not in sel.columns or sel[col].isna().all():
            rows.append({"bar": bar["name"], "ratio": None, "target": target, "met": "not measured", "reason": ""})
            continue
        for _, r in sel[sel[col].notna()].sort_values(["machine", "side"]).iterrows():
            value = float(r[col])
            low, high, pairs, others = (r.get(f"{col} {f}") for f in PAIR_FIELDS)
            met, reason = bar_verdict(bar["metric"], value, low, high, pairs, target, others)
            rows.append({"bar": bar["name"], "machine": r["machine"], "implementation": r["implementation"],
                         "side": int(r["side"]), "ratio": value, "low": low, "high": high, "pairs": pairs,
                         "target": target, "met": met, "reason": reason})
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------- wins and losses


def _span(values: Iterable[float], digits: int = 2) -> str:
    vals = sorted(values)
    lo, hi = f"{vals[0]:.{digits}g}", f"{vals[-1]:.{digits}g}"
    return f"{lo}×" if lo == hi else f"{lo}–{hi}×"


def _sides(values: Iterable[int]) -> str:
    return ", ".join(f"{int(s)}²" for s in sorted(set(values)))


def wins_losses(df: pd.DataFrame, ratio_table: pd.DataFrame, bar_defs: list[dict[str, Any]]) -> list[str]:
    """Markdown bullet lines: per machine, the forward bars where ConvNN is cheaper than the
    baseline at every size measured, those where it costs more, and the mixed ones, with the
    ratios (ConvNN / baseline), sizes and batch. Bars that differ only in sizes are merged."""
    lines: list[str] = []
    machines = sorted(ratio_table["machine"].dropna().unique()) if not ratio_table.empty else []
    heads = {"cheaper": "ConvNN faster or leaner", "dearer": "ConvNN slower or heavier", "mixed": "Mixed"}
    for machine in machines:
        table = ratio_table[ratio_table["machine"] == machine]
        merged: dict[tuple[str, str, int], list[pd.DataFrame]] = {}
        for bar in (b for b in bar_defs if b["direction"] == "forward"):
            col = f"{bar['metric']}/{bar['baseline']}"
            sel = bar_rows(table, bar)
            if col in sel.columns and sel[col].notna().any():
                key = (str(bar.get("what") or bar["name"]), col, int(bar["B"]))
                merged.setdefault(key, []).append(sel[sel[col].notna()])
        groups: dict[str, list[str]] = {k: [] for k in heads}
        for (what, col, b), parts in merged.items():
            values = [float(v) for part in parts for v in part[col]]
            spans = ", ".join(f"{_span(part[col])} at {_sides(part['side'])}" for part in parts)
            text = f"{markdown.text(what)}: {spans}, B={b}{_backend(df, machine, col)}"
            groups["cheaper" if max(values) < 1 else ("dearer" if min(values) > 1 else "mixed")].append(text)
        prefix = f"{markdown.text(machine)}: " if len(machines) > 1 else ""
        lines += [f"- {prefix}**{heads[k]}**: " + "; ".join(items) + "." for k, items in groups.items() if items]
    return lines


def _backend(df: pd.DataFrame, machine: str, col: str) -> str:
    """The backend(s) a baseline's rows record (SDPA's choice), as a suffix."""
    baseline = col.split("/", 1)[1]
    found = df[(df["machine"] == machine) & (df["implementation"] == baseline)]["backend"].dropna()
    names = sorted({str(b) for b in found if b and b != "math"})
    return f" (its backend: {markdown.text(', '.join(names))})" if names else ""


# ---------------------------------------------------------------------------- wrong rows


def _matches(where: dict[str, Any], row: pd.Series) -> bool:
    return all(str(row.get(k)) == str(v) for k, v in where.items())


def wrong_reason(row: pd.Series, notes: list[dict[str, Any]]) -> str:
    """What is known about why a row is ✗: the TF32 settings in force (float32 on CUDA) and the
    notes recorded with the results that match the row; "not known" when nothing is."""
    reasons = []
    if row.get("dtype") == "float32" and str(row.get("device", "")).startswith("cuda"):
        allowed = [what for col, what in (("allow_tf32_cudnn", "cuDNN convolutions (torch.backends.cudnn.allow_tf32)"),
                                          ("allow_tf32_matmul", "CUDA matmuls (torch.backends.cuda.matmul.allow_tf32)"))
                   if row.get(col) is True]
        if allowed:
            reasons.append("likely TF32: it was allowed for " + " and ".join(allowed)
                           + "; TF32 rounds float32 products to a 10-bit mantissa (errors near 1e-3)")
        elif pd.isna(row.get("allow_tf32_cudnn")):
            reasons.append("TF32 settings not recorded (results written before they were)")
    reasons += [n["text"] for n in notes if n.get("where") and n.get("file") == row.get("file") and _matches(n["where"], row)]
    return "; ".join(reasons) or "not known"


def wrong_rows(df: pd.DataFrame, notes: list[dict[str, Any]]) -> pd.DataFrame:
    """Every ✗ row with its error, bound, error/bound and `wrong_reason`."""
    bad = df[df["verdict"] == "✗"].copy()
    bad["error/bound"] = bad["error"] / bad["bound"]
    bad["reason"] = [wrong_reason(r, notes) for _, r in bad.iterrows()]
    return bad


# -------------------------------------------------------------------------------- memory


def memory_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with memory measured: peak tensor memory beside the process's peak RSS and its
    growth over the case (MiB)."""
    g = df[df["peak_memory_bytes"].notna() | df["rss_peak_bytes"].notna()].copy()
    g["tensor_peak_MiB"] = g["peak_memory_bytes"] / MIB
    g["rss_growth_MiB"] = g["rss_growth_bytes"] / MIB
    g["rss_peak_MiB"] = g["rss_peak_bytes"] / MIB
    return g.sort_values(["machine", "mode", "implementation", "direction", "k", "side", "B"])


# ------------------------------------------------------------------------------ Markdown


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return markdown.text(value)


def markdown_table(df: pd.DataFrame, columns: Iterable[str] | None = None) -> str:
    """A GitHub Markdown table of ``df`` (floats to 3 significant digits)."""
    cols = [c for c in (list(columns) if columns is not None else list(df.columns)) if c in df.columns]
    if df.empty:
        return "_(no rows)_\n"
    head = "| " + " | ".join(markdown.text(c) for c in cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    body = "".join("| " + " | ".join(_fmt(r[c]) for c in cols) + " |\n" for _, r in df.iterrows())
    return head + body


def time_pivot(df: pd.DataFrame, mode: str, baselines: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Median milliseconds, rows = configuration, columns = implementation, for one ConvNN mode
    (the baselines compared with it included at the same shape)."""
    own = df[(df["mode"] == mode) & (df["status"] == "ok")]
    if own.empty:
        return pd.DataFrame()
    serving = [name for name, b in baselines.items() if mode in b["compared_with"] and b["computes"] != mode]
    shape = ["machine", "N", "side", "C", "B", "dtype", "device", "direction"]
    extra = df[df["implementation"].isin(serving) & (df["status"] == "ok")].merge(own[shape].drop_duplicates(), on=shape)
    rows = []
    for keys, group in own.groupby(CONFIG, dropna=False):
        rec = dict(zip(CONFIG, keys))
        for _, r in group.iterrows():
            rec[r["implementation"]] = r["median"] * 1e3
        match = extra
        for c in shape:
            match = match[match[c] == rec[c]]
        for _, r in match.iterrows():
            rec.setdefault(r["implementation"], r["median"] * 1e3)
        rows.append(rec)
    out = pd.DataFrame(rows)
    return out.drop(columns=[c for c in ("r",) if c in out and out[c].isna().all()])


def _provenance(sources: list[Source], notes: list[dict[str, Any]], built: str) -> list[str]:
    lines = []
    for s in sources:
        commit = f"{s.commit}{' (dirty)' if s.dirty else ''}" if s.commit != "unknown" else "unknown (not recorded)"
        how = f", {markdown.code(s.command)}" if s.command else ""
        lines.append(f"- {markdown.code(s.file)} ({s.kind}): **{markdown.text(s.machine)}**, measured at commit {markdown.text(commit)}"
                     f"{', preset ' + markdown.text(s.preset) if s.preset else ''}{how}.")
        if s.kind == "journal":
            lines.append(f"  Read from the journal: its sweep was stopped or is still running"
                         f"{'; ' + markdown.code(s.assemble_hint) + ' writes its JSON' if s.assemble_hint else ''}.")
        if s.annotated:
            lines.append(f"  Baselines and bars added after the run by {markdown.code(s.annotated.get('by'))} "
                         f"(commit {markdown.text(str(s.annotated.get('commit'))[:12])}): {markdown.text(s.annotated.get('what'))}.")
        if not s.has_definitions:
            lines.append("  Records no baselines or bars (written before they were): no ratios from this file.")
        if not s.has_rss:
            lines.append("  Records no process RSS (written before it was).")
        for note in (n for n in notes if n.get("file") == s.file):
            where = ", ".join(f"{k}={v}" for k, v in (note.get("where") or {}).items())
            lines.append(f"  Note{' on rows with ' + markdown.text(where) if where else ''}: {markdown.text(note['text'])}")
    lines.append(f"- Report built at commit {built}.")
    return lines


def summary_markdown(results: Results, ratio_table: pd.DataFrame, bar_table: pd.DataFrame, figures: list[str],
                     generated: str, built: str) -> str:
    """The report's Markdown page; its first line says it is generated and by what."""
    df = results.df
    several = df["machine"].nunique() > 1
    m = "machine" if several else ""
    lines = [f"<!-- {markdown.comment(generated)} -->", "# ConvNN benchmark report", ""]
    lines += host_lines(results.sources)
    lines += ["## Wins and losses", "",
              "Forward, ratio = ConvNN / baseline (time, or peak tensor memory) over the sizes measured; "
              "bars below give every size and forward+backward.", ""]
    lines += wins_losses(df, ratio_table, results.bars) or ["_(no bars measured: the results record no baselines or bars)_"]
    lines += ["", "## Where these numbers come from", "", *_provenance(results.sources, results.notes, built)]
    lines += ["", *skipped_markdown(results.skipped)] if results.skipped else []
    timers = sorted(df["timer"].dropna().unique())
    methods = sorted(df["memory_method"].dropna().unique())
    rss = sorted(df["rss_method"].dropna().unique())
    lines += ["", "Timing: " + markdown.text("; ".join(timers or ["–"])) + ". Median and IQR per case; rows with IQR/median > 10% are flagged.",
              "Time ratios: each ConvNN row and the baseline it is divided by are timed alternately in one process "
              "(A B, B A, ...), one ratio per pair; the median of the pair ratios with its 95% interval (order "
              "statistics) and the pair count. A ratio without pairs (older results) is marked unpaired.",
              "Peak tensor memory: " + markdown.text("; ".join(methods or ["–"])) + ".",
              "Process memory: peak RSS over warm-up and timed rounds, " + (markdown.text("; ".join(rss)) if rss else "not recorded") + ".", ""]
    lines += _correctness(df, results.notes, several)
    lines += ["## Bars", "", "Ratio = ConvNN / baseline (time: median of interleaved pairs, with its 95% interval and "
              "the number of pairs; or peak tensor memory); a target, where a bar has one, is the ratio aimed at. A time "
              "bar is met or not met only when its whole interval lies on one side of the target; otherwise it is "
              "inconclusive, with the reason.", ""]
    lines += _verdict_counts(bar_table)
    shown = bar_table.assign(interval=[_interval(lo, hi) for lo, hi in zip(bar_table["low"], bar_table["high"])])
    lines.append(markdown_table(shown, ["bar", m, "implementation", "side", "ratio", "interval", "pairs", "target", "met",
                                        "reason"]))
    lines += ["## Ratios to the baselines", ""]
    for name, b in results.baselines.items():
        lines.append(f"- {markdown.code(name)}: {markdown.text(b['label'])}; compared with "
                     f"{markdown.text(', '.join(b['compared_with']))} rows.")
    lines += ["", "Below 1: ConvNN is cheaper than the baseline.", ""]
    ratio_cols = [c for c in ratio_table.columns if c.startswith(("time/", "memory/")) and " " not in c]
    show = [m, "implementation", "mode", "k", "side", "B", "dtype", "direction", "median_ms", *ratio_cols]
    if not ratio_table.empty:
        ratio_table = ratio_table.assign(median_ms=ratio_table["median"] * 1e3)
        ratio_table = ratio_table.sort_values(["machine", "mode", "dtype", "direction", "k", "side"])
        ratio_table = ratio_table.assign(**{c: _ratio_cells(ratio_table, c) for c in ratio_cols if c.startswith("time/")})
    lines += ["Time ratios: median of the pairs [95% interval] n=pairs; *unpaired*: the ratio of two medians timed apart.", ""]
    lines.append(markdown_table(ratio_table, show))
    lines += ["## Memory: peak tensor memory and process RSS", "",
              "Tensor: the allocator's high-water mark during one call (device memory on GPUs). RSS: the whole "
              "process's resident set (host memory), its peak over warm-up and timed rounds, and its growth above "
              "the level at the case's start. RSS sees allocator fragmentation and cached blocks, which tensor counts "
              "cannot; memory the process already holds from earlier cases is reused without growing it, so a "
              "growth near 0 means the case fit in what the process had.", ""]
    mem = memory_table(df)
    lines.append(markdown_table(mem, [m, "implementation", "mode", "k", "side", "B", "dtype", "direction",
                                      "tensor_peak_MiB", "rss_growth_MiB", "rss_peak_MiB"]))
    lines += ["## Median time (ms) by configuration", ""]
    for mode in sorted(convnn_rows(df)["mode"].dropna().unique()):
        pivot = time_pivot(df, mode, results.baselines)
        if not pivot.empty:
            lines += [f"### {markdown.text(mode)}", "", markdown_table(pivot.drop(columns=["mode"] + ([] if several else ["machine"])))]
    failed = df[df["status"] != "ok"]
    lines += ["## Failures (kept as rows, drawn as marked points)", ""]
    lines.append(markdown_table(failed, [m, "implementation", "mode", "k", "side", "B", "dtype", "direction", "status", "message"]))
    noisy = df[df["warning"].notna() & (df["warning"] != "")]
    noisy = noisy.assign(median_ms=noisy["median"] * 1e3, iqr_ms=noisy["iqr"] * 1e3)
    lines += ["## Noisy rows (IQR/median > 10%)", ""]
    lines.append(markdown_table(noisy, [m, "implementation", "mode", "k", "side", "dtype", "direction", "median_ms", "iqr_ms", "warning"]))
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def _interval(low: object, high: object) -> str:
    if _missing(low) or _missing(high):
        return "–"
    return f"[{float(low):.3g}–{float(high):.3g}]"  # type: ignore[arg-type]


def _ratio_cells(table: pd.DataFrame, col: str) -> list[str]:
    """``time/<baseline>`` as text: median [interval] n=pairs, or the unpaired ratio marked."""
    cells = []
    for value, low, high, pairs in zip(table[col], table[f"{col} low"], table[f"{col} high"], table[f"{col} pairs"]):
        if _missing(value):
            cells.append("–")
        elif _missing(pairs):
            cells.append(f"{value:.3g} *unpaired*")
        else:
            cells.append(f"{value:.3g} {_interval(low, high)} n={int(pairs)}")
    return cells


def _verdict_counts(bar_table: pd.DataFrame) -> list[str]:
    if bar_table.empty:
        return []
    counts = {k: int(v) for k, v in bar_table["met"].value_counts().items()}
    text = ", ".join(f"{v} {k}" for k, v in counts.items())
    return [f"Verdicts: {text}.", ""]


def host_lines(sources: list[Source]) -> list[str]:
    """The report's host section: per results file and run, the threads used and why, the load
    averages at the start and end, the cores other processes used during the sweep, the thread
    pools, the governor, GPU clocks and other GPU processes; warnings first."""
    lines = ["## Host and threads", ""]
    warnings = []
    for s in sources:
        if not s.host:
            lines.append(f"- {markdown.code(s.file)}: the host's load and thread settings were not recorded (results of the older stopwatch).")
            continue
        for run in s.host:
            start, end = run.get("start") or {}, run.get("end") or {}
            pools = ", ".join(f"{k}={start.get(k)}" for k in ("torch_threads", "torch_interop_threads", "OMP_NUM_THREADS",
                                                             "MKL_NUM_THREADS", "faiss_threads") if k in start)
            text = (f"- {markdown.code(s.file)} run {markdown.text(run.get('run'))}: "
                    f"**{markdown.text(run.get('threads'))} CPU thread(s)** ({markdown.text(run.get('threads_why'))}); "
                    f"{markdown.text(start.get('cores'))} cores; load average {markdown.text(start.get('load_average'))} at the start, "
                    f"{markdown.text(end.get('load_average')) if end else 'not recorded (the run stopped)'} at the end")
            if isinstance(run.get("others_cores"), (int, float)):
                text += (f"; other processes used {run['others_cores']:.2f} cores on average during the sweep "
                         f"({markdown.text(run.get('others_cpu_s'))} CPU s in {markdown.text(run.get('wall_s'))} s)")
            text += (f"; thread pools: {markdown.text(pools)}; frequency governor: "
                     f"{markdown.text(start.get('governor') or 'not readable')}")
            gpu = start.get("gpu")
            if isinstance(gpu, dict) and gpu:
                text += (f"; GPU clocks {markdown.text(gpu.get('gpus'))}, other GPU processes "
                         f"{markdown.text(gpu.get('other_processes') or 'none')}")
            lines.append(text + ".")
            if run.get("warning"):
                warnings.append(f"**Warning** ({markdown.code(s.file)}): {markdown.text(run['warning'])}.")
    return [*lines, "", *[w + "  " for w in warnings], ""] if warnings else [*lines, ""]


def _correctness(df: pd.DataFrame, notes: list[dict[str, Any]], several: bool) -> list[str]:
    verdicts = {k: int(v) for k, v in df["verdict"].value_counts().items()}
    status = {k: int(v) for k, v in df["status"].value_counts().items()}
    lines = ["## Correctness", "",
             "Every timed output is compared with a float64 gold on the same input, within the equivalence suite's "
             "error bound (2 × the same-dtype PyTorch operator's error + a floor of a few ulps and √(reduction) at "
             "the output's magnitude); n/a: every query's selection lies within the dtype's rounding.", "",
             f"Rows: {len(df)}; status {markdown.text(status)}; verdicts {markdown.text(verdicts)}.", ""]
    bad = wrong_rows(df, notes)
    if bad.empty:
        return [*lines, "No row is ✗.", ""]
    reasons = list(dict.fromkeys(bad["reason"]))
    bad = bad.assign(why=[f"[{reasons.index(r) + 1}]" for r in bad["reason"]])
    cols = ["machine" if several else "", "implementation", "mode", "k", "side", "B", "dtype", "device", "direction",
            "error", "bound", "error/bound", "why"]
    return [*lines, f"{len(bad)} rows are ✗ (wrong): measured error, the bound it exceeds, and why (below the table).", "",
            markdown_table(bad, cols), *(f"[{i + 1}] {markdown.text(r)}  " for i, r in enumerate(reasons)), ""]
