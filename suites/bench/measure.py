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

Process memory. Beside the tensor high-water mark, `ProcessPeak` records the process's peak
resident set size (RSS) over the warm-up and the timed rounds, which sees what tensor counts
cannot: allocator fragmentation, memory the allocator keeps, the Python heap. Linux: the
kernel's own high-water mark (``VmHWM``), reset before the block through
``/proc/self/clear_refs``; where that is refused, a thread sampling ``/proc/self/statm`` every
millisecond; elsewhere ``ru_maxrss`` (monotonic over the process: only a new maximum shows).

FLOPs. ``useful``: what the selected neighbours need (aggregation over k slots); ``total``:
what the implementation's algorithm computes, including the similarity over its candidates.
Forward+backward rows count three times the forward (the usual estimate: the backward of a
matrix product costs two). Multiply-add = 2 FLOPs.

Verdict. Error against the float64 gold on the very input that was timed, within the
equivalence suite's own bound (`suites.tolerance.bound`): ``max|cand − gold| ≤ 2·max|base −
gold| + floor``, base the same-dtype PyTorch operator where one exists, the floor a few ulps
plus a term in sqrt(L) at the output's magnitude (L the longest reduction behind one output).
Queries whose selection is ambiguous at this dtype (a score gap below rounding) are left out of
the comparison, and the fraction compared is recorded. The forward output is verified, also on
forward+backward rows. The verdict records the float32 precision settings that were in force
(TF32 for CUDA matmuls and cuDNN convolutions), which explain float32 errors near 1e-3 on GPUs.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

import torch
from pytest_benchmark.stats import Stats

from suites import tolerance
from suites.bench.cases import Case, dtype_of
from suites.inputs import randn

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


class ProcessPeak:
    """Peak resident set size of this process while the ``with`` block runs (see the module
    docstring): ``start`` and ``peak`` in bytes, ``method`` how they were read."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProcessPeak:
        self.start = self.peak = rss_bytes()
        if _reset_high_water_mark():
            self.method = "VmHWM of /proc/self/status, reset before the case through /proc/self/clear_refs"
        elif os.path.exists("/proc/self/statm"):
            self.method = "/proc/self/statm sampled every 1 ms"
            self._thread = threading.Thread(target=self._sample, name="convnn-bench-rss", daemon=True)
            self._thread.start()
        else:
            self.method = "ru_maxrss (monotonic over the process)"
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.method.startswith("VmHWM"):
            self.peak = max(self.peak, _status_bytes("VmHWM"))
        elif self._thread is None:
            self.peak = max(self.peak, _maxrss_bytes())
        self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    """This process's resident set size now (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _maxrss_bytes()


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak RSS of this process (Linux ≥ 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") > 0


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


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
    a = randn((n, n), 0, dtype_of(dtype), device)
    b = randn((n, n), 1, dtype_of(dtype), device)
    for _ in range(2):
        a @ b
    best = min(time_rounds(lambda: a @ b, device, 6 if device == "cpu" else 20))
    return 2.0 * n**3 / best / 1e9


# --------------------------------------------------------------------------------- verdict


def precision_flags() -> dict[str, object]:
    """The float32 precision settings in force: whether CUDA matmuls and cuDNN convolutions may
    use TF32 (10-bit mantissa), and ``torch.get_float32_matmul_precision()``."""
    return {
        "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "allow_tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def verdict(
    out: torch.Tensor,
    gold: torch.Tensor,
    base: torch.Tensor | None,
    ambiguous: torch.Tensor | None,
    reduction: int,
    dtype: str,
) -> dict[str, object]:
    """``out`` against ``gold`` within `suites.tolerance.bound` (see the module docstring).
    ``out``, ``gold``, ``base``: ``(B, C, H, W)`` or ``(B, N, C)``; ``ambiguous``: bool
    ``(B, N)``. Returns the mark (✓, ✗, or n/a when nothing could be compared), the error, the
    bound and its floor, the base's error, the fraction compared and `precision_flags`."""
    keep = None
    if ambiguous is not None and bool(ambiguous.any()):
        keep = ~ambiguous
        keep = keep.reshape(out.shape[0], 1, *out.shape[2:]) if out.dim() == 4 else keep[..., None]
        keep = keep.expand_as(out).to(out.device)

    def compared(t: torch.Tensor) -> torch.Tensor:
        return t if keep is None else t[keep]

    def max_abs(t: torch.Tensor) -> float:
        t = compared(t)
        return float(t.abs().max()) if t.numel() else 0.0

    gold = gold.to(out.device)
    err = max_abs(out.to(torch.float64) - gold)
    base_err = max_abs(base.to(torch.float64) - gold) if base is not None else 0.0
    kept_gold = compared(gold).cpu()
    bound = tolerance.bound(base_err, kept_gold, dtype_of(dtype), reduction)
    ok = math.isfinite(err) and err <= bound
    fraction = 1.0 if ambiguous is None else float((~ambiguous).float().mean())
    mark = ("✓" if ok else "✗") if fraction > 0 else "n/a"  # n/a: every selection within rounding
    return {
        "verdict": mark,
        "error": err,
        "bound": bound,
        "floor": tolerance.floor(kept_gold, dtype_of(dtype), reduction),
        "base_error": base_err if base is not None else None,
        "compared_fraction": fraction,
        **precision_flags(),
    }
