"""How one case is measured: time, peak memory, FLOPs, the matmul peak and the verdict.

Timing. A warm-up call, a calibration call that sets the number of rounds, then the rounds;
each round is one call. On CUDA every round is bracketed by CUDA events and synchronised, and
pytest-benchmark's target synchronises before returning (its timer alone would not wait for
the device). Median and IQR per case; IQR/median above `NOISY` is flagged in the row.

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over one call, minus what was allocated
before it. CPU: the CPU allocator's own allocation and free events, recorded by
``torch.profiler`` with ``profile_memory=True`` over one call; the running sum of the event
sizes in time order gives the high-water mark of tensor bytes above the level at the start.
Both count tensors only (not the Python heap or the allocator's cached-but-free blocks), so
CPU and CUDA numbers mean the same thing.

FLOPs. ``useful``: what the selected neighbours need (aggregation over k slots); ``total``:
what the implementation's algorithm computes, including the similarity over its candidates.
Forward+backward rows count three times the forward (the usual estimate: the backward of a
matrix product costs two). Multiply-add = 2 FLOPs.

Verdict (SPEC §4). Error against the float64 gold on the very input that was timed:
``max|cand − gold| ≤ 2·max|base − gold| + (4 + sqrt(L))·eps·max|gold|``, base the same-dtype
PyTorch operator where one exists, L the longest reduction behind one output. Queries whose
selection is ambiguous at this dtype (a score gap below rounding) are left out of the
comparison, and the fraction compared is recorded. The forward output is verified, also on
forward+backward rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from pytest_benchmark.stats import Stats

from suites.bench.cases import Case, dtype_of

#: IQR/median above this marks a row noisy.
NOISY = 0.10


# ---------------------------------------------------------------------------------- timing


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def synced(fn: Callable[[], object], device: str) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation: safe to time with a host clock."""

    def call() -> None:
        fn()
        synchronize(device)

    return call


def call_seconds(fn: Callable[[], object], device: str) -> float:
    """Wall time of one synchronised call."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def plan_rounds(first_call_s: float, target_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds so that the timed loop takes about ``target_s``, within [min, max]."""
    if first_call_s <= 0:
        return max_rounds
    return int(min(max_rounds, max(min_rounds, round(target_s / first_call_s))))


def time_rounds(fn: Callable[[], object], device: str, rounds: int) -> list[float]:
    """Seconds per call over ``rounds`` calls: CUDA events on CUDA, ``perf_counter`` on CPU."""
    times = []
    if device.startswith("cuda"):
        for _ in range(rounds):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return times
    for _ in range(rounds):
        times.append(call_seconds(fn, device))
    return times


def summarize(times: list[float]) -> dict[str, float | int | str]:
    """pytest-benchmark's statistics of per-call seconds (median, IQR, quartiles, ...)."""
    stats = Stats()
    for t in times:
        stats.update(t)
    out: dict[str, float | int | str] = dict(stats.as_dict())
    out["iterations"] = 1
    return out


def noise_warning(median: float, iqr: float) -> str | None:
    """A warning string when IQR/median exceeds `NOISY`."""
    if median > 0 and iqr / median > NOISY:
        return f"noisy: IQR/median = {iqr / median:.0%} > {NOISY:.0%}"
    return None


# ---------------------------------------------------------------------------------- memory

CPU_MEMORY_METHOD = "torch.profiler allocator events (profile_memory=True): high-water mark of CPU tensor bytes during one call"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated during one call, minus the bytes allocated before it"


def peak_memory(fn: Callable[[], object], device: str) -> tuple[int | None, str]:
    """Peak tensor bytes allocated by one call of ``fn`` above the level at its start, and the
    method used."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before), CUDA_MEMORY_METHOD
    return _cpu_peak_memory(fn), CPU_MEMORY_METHOD


def _cpu_peak_memory(fn: Callable[[], object]) -> int | None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    results = getattr(prof.profiler, "kineto_results", None) if prof.profiler is not None else None
    if results is None:
        return None
    events = [e for e in results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        level += e.nbytes()
        peak = max(peak, level)
    return peak


# ----------------------------------------------------------------------------------- FLOPs


def flops(case: Case) -> tuple[float, float]:
    """(useful, total) FLOPs of one call of ``case`` (see the module docstring)."""
    b, n, c, k = case.B, case.N, case.C, case.k
    mode, impl = case.mode, case.implementation
    if mode in ("position", "position-depthwise"):
        c_in = 1 if mode == "position-depthwise" else c
        useful = total = 2.0 * b * n * k * c_in * c
    elif mode in ("attention", "kvt"):
        useful = 2.0 * b * n * k * c  # weighted sum of the k selected values
        total = useful + 2.0 * b * n * n * c  # plus every score
        if impl in ("sdpa", "sdpa-math", "kvt-dense"):
            total = 4.0 * b * n * n * c  # dense: all scores and all values
    else:  # feature-like modes: full kernel over k gathered neighbours
        useful = 2.0 * b * n * k * c * c
        m = {"feature-random": case.r or n, "feature-grid": (case.r or 1) ** 2}.get(mode, n)
        d = c + 2 if mode == "hybrid" else c
        total = useful + 2.0 * b * n * m * d
    factor = 3.0 if case.direction == "forward+backward" else 1.0
    return useful * factor, total * factor


def compulsory_bytes(case: Case) -> float:
    """Bytes every implementation must read or write at least once (inputs, weight, output):
    the denominator of arithmetic intensity."""
    size = torch.empty((), dtype=dtype_of(case.dtype)).element_size()
    b, n, c, k = case.B, case.N, case.C, case.k
    if case.mode in ("attention", "kvt"):
        elements = 4 * b * n * c  # q, k, v, output
    else:
        c_in = 1 if case.mode == "position-depthwise" else c
        elements = 2 * b * n * c + c * c_in * k
    factor = 2.0 if case.direction == "forward+backward" else 1.0
    return elements * size * factor


# ------------------------------------------------------------------------------ matmul peak


def matmul_peak(device: str, dtype: str) -> float:
    """GFLOP/s of the best of several square matrix products on ``device`` in ``dtype``: the
    roofline's compute ceiling, measured once per run."""
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device).to(dtype_of(dtype))
    b = torch.randn(n, n, device=device).to(dtype_of(dtype))
    for _ in range(2):
        a @ b
    best = min(time_rounds(lambda: a @ b, device, 6 if device == "cpu" else 20))
    return 2.0 * n**3 / best / 1e9


# --------------------------------------------------------------------------------- verdict


def verdict(
    out: torch.Tensor,
    gold: torch.Tensor,
    base: torch.Tensor | None,
    ambiguous: torch.Tensor | None,
    reduction: int,
    dtype: str,
) -> dict[str, object]:
    """The SPEC §4 check of ``out`` against ``gold`` (see the module docstring). ``out``,
    ``gold``, ``base``: ``(B, C, H, W)`` or ``(B, N, C)``; ``ambiguous``: bool ``(B, N)``."""
    keep = None
    if ambiguous is not None and bool(ambiguous.any()):
        keep = ~ambiguous
        keep = keep.reshape(out.shape[0], 1, *out.shape[2:]) if out.dim() == 4 else keep[..., None]
        keep = keep.expand_as(out).to(out.device)

    def max_abs(t: torch.Tensor) -> float:
        t = t if keep is None else t[keep]
        return float(t.abs().max()) if t.numel() else 0.0

    gold = gold.to(out.device)
    err = max_abs(out.to(torch.float64) - gold)
    base_err = max_abs(base.to(torch.float64) - gold) if base is not None else 0.0
    scale = max(max_abs(gold), torch.finfo(torch.float64).tiny)
    floor = (4.0 + math.sqrt(reduction)) * torch.finfo(dtype_of(dtype)).eps * scale
    bound = 2.0 * base_err + floor
    ok = math.isfinite(err) and err <= bound
    compared = 1.0 if ambiguous is None else float((~ambiguous).float().mean())
    mark = ("✓" if ok else "✗") if compared > 0 else "n/a"  # n/a: every selection within rounding
    return {
        "verdict": mark,
        "error": err,
        "bound": bound,
        "base_error": base_err if base is not None else None,
        "compared_fraction": compared,
    }
