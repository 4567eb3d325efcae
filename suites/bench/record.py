"""Measure one case end to end and return its row: a pytest-benchmark benchmark entry whose
``extra_info`` carries the case and its input seeds, the timing summary, peak tensor memory and
the process's peak RSS, FLOPs, the roofline fraction and the correctness verdict (with the
precision settings in force). Failures (out of memory, time limit, wrong result, exception)
are rows too, with a ``status``; nothing is dropped."""

from __future__ import annotations

import gc
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from suites.bench import measure, paired
from suites.bench.cases import Case, build
from suites.bench.presets import Timing
from suites.implementations import Implementation

STATUSES = ("ok", "wrong", "oom", "time_limit", "error", "crashed")


def measure_case(
    case: Case,
    impl: Implementation | None,
    *,
    timing: Timing,
    benchmark: Any | None,
    timed: bool,
    peak_gflops: float | None,
    nodeid: str = "",
    partners: list[tuple[str, Case]] | None = None,
) -> dict[str, Any]:
    """Run ``case``: warm-up, timed rounds (through ``benchmark.pedantic`` when pytest-benchmark
    is enabled, else our own loop; none when ``timed`` is False), both under `ProcessPeak`; one
    memory-tracked call, and the verdict; then, timed and ok, the interleaved pairs with each of
    ``partners`` (baseline name, baseline case). Returns the row."""
    started = time.perf_counter()
    info: dict[str, Any] = dict(case.fields())
    info.update(status="ok", message="", torch_threads=torch.get_num_threads(),
                select_engine=os.environ.get("CONVNN_SELECT_ENGINE", "") or "auto")
    stats: dict[str, Any] | None = None
    rss = measure.ProcessPeak()
    try:
        work = build(case, impl)
        info["backend"] = work.backend
        info["input_seeds"] = work.seeds
        with rss:
            first = measure.call_seconds(work.run, case.device)  # warm-up (includes one-time costs)
            info["first_call_s"] = first
            if first > timing.call_limit_s:
                info.update(status="time_limit", message=f"first call took {first:.1f} s > {timing.call_limit_s:.0f} s")
            elif timed:
                rounds = measure.plan_rounds(first, timing.target_s, timing.min_rounds, timing.max_rounds)
                times, info["timer"] = _time(work.run, case.device, rounds, benchmark)
                stats = measure.summarize(times)
            elif benchmark is not None:  # --benchmark-disable: one untimed call through the fixture
                benchmark.pedantic(measure.synced(work.run, case.device), rounds=1, iterations=1)
        if info["status"] == "ok":
            peak, info["memory_method"] = measure.peak_memory(work.run, case.device)
            info["peak_memory_bytes"] = peak
            base = work.base() if work.base else None
            v = measure.verdict(work.output(), work.gold(), base, work.ambiguous(), work.reduction, case.dtype)
            info.update(v)
            if v["verdict"] == "✗":
                info.update(status="wrong", message=f"max error {v['error']:.3g} > bound {v['bound']:.3g}")
        if info["status"] == "ok" and timed and partners:
            info["pairs"] = {name: _pairs(work.run, other, case.device, timing) for name, other in partners}
    except torch.cuda.OutOfMemoryError as exc:
        info.update(status="oom", message=str(exc).splitlines()[0][:300])
    except RuntimeError as exc:
        text = str(exc)
        oom = "out of memory" in text.lower() or "can't allocate memory" in text.lower()
        info.update(status="oom" if oom else "error", message=text.splitlines()[0][:300] if text else repr(exc))
        if not oom:
            info["traceback"] = _traceback()
    except Exception as exc:  # every failure becomes a row, never a lost case
        info.update(status="error", message=f"{type(exc).__name__}: {exc}"[:300], traceback=_traceback())
    finally:
        if rss.method:  # also on failures: an out-of-memory case shows how far the process grew
            info.update(rss_start_bytes=rss.start, rss_peak_bytes=rss.peak, rss_method=rss.method)
        _release(case.device)
    _derived(case, info, stats, peak_gflops)
    info["case_wall_s"] = time.perf_counter() - started  # the whole case: warm-up, rounds, memory, verdict
    return {
        "group": case.mode,
        "name": f"test_bench[{case.id}]",
        "fullname": nodeid or f"suites/bench/test_bench.py::test_bench[{case.id}]",
        "params": {"case": case.id},
        "param": case.id,
        "extra_info": info,
        "options": {"timer": info.get("timer"), "min_rounds": timing.min_rounds, "max_rounds": timing.max_rounds, "warmup": 1},
        "stats": stats,
    }


def _pairs(run: Any, other: Case, device: str, timing: Timing) -> dict[str, Any]:
    """The pair record of ``run`` against the baseline case ``other`` (built here, on its own
    seeded inputs of the same shape), or what stopped it."""
    try:
        work = build(other, None)
        clock = paired.choose_clock(device, torch.get_num_threads())
        record = paired.measure_pairs(run, work.run, timing.pair_plan(), sync=lambda: measure.synchronize(device), clock=clock)
    except Exception as exc:  # a baseline that fails leaves the row and its other pairs intact
        return {"baseline_case": other.id, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        _release(device)
    return {"baseline_case": other.id, **record}


def _time(fn: Any, device: str, rounds: int, benchmark: Any | None) -> tuple[list[float], str]:
    """Per-call seconds over ``rounds`` rounds, and which timer took them."""
    if benchmark is not None and getattr(benchmark, "enabled", False):
        benchmark.pedantic(measure.synced(fn, device), rounds=rounds, warmup_rounds=0, iterations=1)
        return list(benchmark.stats.stats.data), "pytest-benchmark pedantic, perf_counter, device synchronised in the target"
    timer = "CUDA events, synchronised per round" if device.startswith("cuda") else "perf_counter per call"
    return measure.time_rounds(fn, device, rounds), timer


def _derived(case: Case, info: dict[str, Any], stats: dict[str, Any] | None, peak_gflops: float | None) -> None:
    """Median, IQR, the noise warning, FLOPs, GFLOP/s and the roofline fraction."""
    useful, total = measure.flops(case)
    nbytes = measure.compulsory_bytes(case)
    info.update(useful_flops=useful, total_flops=total, arithmetic_intensity=total / nbytes, peak_gflops=peak_gflops)
    if stats is None:
        info.update(median=None, iqr=None, warning=None, gflops=None, useful_gflops=None, peak_fraction=None)
        return
    median, iqr = float(stats["median"]), float(stats["iqr"])
    gflops = total / median / 1e9 if median > 0 else None
    info.update(
        median=median,
        iqr=iqr,
        rounds=stats["rounds"],
        q1=float(stats["q1"]),
        q3=float(stats["q3"]),
        warning=measure.noise_warning(median, iqr),
        gflops=gflops,
        useful_gflops=useful / median / 1e9 if median > 0 else None,
        peak_fraction=gflops / peak_gflops if gflops is not None and peak_gflops else None,
    )


def _traceback() -> str:
    """The current exception's traceback with paths relative to the working directory."""
    return traceback.format_exc(limit=6).replace(str(Path.cwd()) + os.sep, "")


def _release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
