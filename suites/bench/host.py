"""The host, seen and said: how busy it is, how many threads the sweep may use, and what every
thread pool was set to.

- `CpuSample`: the CPU time the whole machine and this process (with its waited-for children)
  have spent, read from ``/proc/stat`` and ``/proc/self/stat``. Two samples give the CPU time
  *other* processes took in between (`others_cores`: in cores, averaged over the wall time).
- `snapshot`: what a results file records at a sweep's start and end: load averages, cores,
  the thread settings of torch, OpenMP, MKL and faiss, the CPU frequency governor where
  readable, and on CUDA hosts the other processes on the GPU and its clocks (``nvidia-smi``).
- `choose_threads`: the ``--threads auto`` count, from the cores other processes were seen
  using: the idle cores, at least 1 (so on a 2-core host with anything else running, 1). A
  thread count above the idle cores makes OpenMP threads wait at barriers for a core that is
  taken, and the timed calls stretch by up to 10x while single-threaded baselines do not.
- `apply_threads`: torch's intra-op pool and faiss's OpenMP pool follow the chosen count.
- `busy_warning`: the warning the progress line and the report print, with what to do.

Nothing here is read on import; where ``/proc`` is missing the CPU figures are None.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

#: Other processes using at least this many cores (on average) make a host "busy".
BUSY_CORES = 0.25
#: Environment variable through which the runner passes the chosen thread count to pytest.
THREADS_ENV = "CONVNN_BENCH_THREADS"


def cores() -> int:
    """The cores this process may run on (its affinity mask), else ``os.cpu_count()``."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        try:
            return max(1, len(getter(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds (every core), this process's own CPU seconds (with its
    waited-for children) and the wall clock, at one instant."""

    wall: float
    machine_busy_s: float | None
    own_s: float | None


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def parse_proc_stat(text: str) -> float | None:
    """Busy CPU seconds of the whole machine from ``/proc/stat``'s ``cpu`` line (user, nice,
    system, irq, softirq, steal; idle and iowait left out), in clock ticks."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            parts = [float(v) for v in line.split()[1:]]
            parts += [0.0] * (8 - len(parts))
            user, nice, system, _idle, _iowait, irq, softirq, steal = parts[:8]
            return user + nice + system + irq + softirq + steal
    return None


def parse_proc_pid_stat(text: str) -> float | None:
    """utime + stime + cutime + cstime of ``/proc/<pid>/stat`` in clock ticks (the command
    name, which may hold spaces, is skipped at its closing parenthesis)."""
    tail = text.rsplit(")", 1)[-1].split()
    try:
        return sum(float(v) for v in tail[11:15])  # fields 14-17 of the whole line
    except (ValueError, IndexError):
        return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return None


def cpu_sample() -> CpuSample:
    """`CpuSample` now (None fields where ``/proc`` cannot be read)."""
    tick = _clock_ticks()
    machine = _read("/proc/stat")
    own = _read("/proc/self/stat")
    busy = parse_proc_stat(machine) if machine is not None else None
    mine = parse_proc_pid_stat(own) if own is not None else None
    return CpuSample(time.monotonic(), None if busy is None else busy / tick, None if mine is None else mine / tick)


def others_cpu_s(start: CpuSample, end: CpuSample) -> float | None:
    """CPU seconds other processes took between two samples (None where unknown)."""
    if None in (start.machine_busy_s, end.machine_busy_s, start.own_s, end.own_s):
        return None
    assert start.machine_busy_s is not None and end.machine_busy_s is not None
    assert start.own_s is not None and end.own_s is not None
    return max(0.0, (end.machine_busy_s - start.machine_busy_s) - (end.own_s - start.own_s))


def others_cores(start: CpuSample, end: CpuSample) -> float | None:
    """Cores other processes kept busy between two samples, on average over the wall time."""
    spent = others_cpu_s(start, end)
    wall = end.wall - start.wall
    if spent is None or wall <= 0:
        return None
    return spent / wall


def sample_others(window_s: float = 0.5) -> float | None:
    """Cores other processes use now, seen over ``window_s`` seconds of this process sleeping."""
    start = cpu_sample()
    time.sleep(window_s)
    return others_cores(start, cpu_sample())


def choose_threads(n_cores: int, others: float | None) -> int:
    """The default CPU thread count: the cores left idle by other processes (a core counts as
    taken once others use more than `BUSY_CORES` of it), at least 1. Unknown load (no
    ``/proc``): 1, the count that no busy core can slow down."""
    if n_cores < 1:
        raise ValueError(f"n_cores={n_cores} must be at least 1")
    if others is None or others < 0:
        return 1
    taken = max(0, math.ceil(others - BUSY_CORES))
    return max(1, n_cores - taken)


def busy(others: float | None) -> bool:
    """Whether other processes' average use marks the host busy."""
    return others is not None and others >= BUSY_CORES


def busy_warning(others: float | None, n_cores: int, threads: int) -> str | None:
    """What to tell the user when other processes used the host beside the sweep (None when
    they did not): how much they used and what to do about it."""
    if others is None:
        return None
    spin = threads > 1 and threads + others > n_cores + BUSY_CORES
    if not busy(others) and not spin:
        return None
    text = f"host busy: other processes used {others:.2f} of {n_cores} cores"
    if spin:
        text += (f"; {threads} threads on {n_cores} cores with others running make OpenMP threads wait at barriers:"
                 " rerun with --threads 1 (or --threads auto)")
    text += ("; ratios are paired so both sides saw the same load, but timings are slower and noisier and"
             " verdicts near their target may be inconclusive: rerun on a quiet host (stop other jobs) to decide them")
    return text


def thread_settings() -> dict[str, Any]:
    """Every thread pool's setting: torch's intra- and inter-op threads, OMP_NUM_THREADS,
    MKL_NUM_THREADS, whether torch uses MKL, and faiss's OpenMP threads (None: no faiss)."""
    import torch

    out: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "torch_mkl": bool(torch.backends.mkl.is_available()),
        "faiss_threads": None,
    }
    try:
        import faiss
    except ImportError:
        return out
    getter = getattr(faiss, "omp_get_max_threads", None)
    out["faiss_threads"] = int(getter()) if getter is not None else None
    return out


def apply_threads(threads: int) -> None:
    """torch's intra-op pool and faiss's OpenMP pool to ``threads`` (faiss where installed)."""
    if threads < 1:
        raise ValueError(f"threads={threads} must be at least 1")
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss
    except ImportError:
        return
    setter = getattr(faiss, "omp_set_num_threads", None)
    if setter is not None:
        setter(threads)


def governor() -> str | None:
    """The CPU frequency governor of cpu0 (``performance``, ``powersave``, ...), where readable."""
    text = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return text.strip() if text else None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes, this one included)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _nvidia_smi(*query: str) -> list[str] | None:
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def gpu_state() -> dict[str, Any] | None:
    """Other processes on the GPUs (pid, name, MiB) and each GPU's clocks and utilisation, from
    ``nvidia-smi``; None where it is missing."""
    apps = _nvidia_smi("--query-compute-apps=pid,process_name,used_memory")
    gpus = _nvidia_smi("--query-gpu=index,clocks.sm,clocks.max.sm,clocks.mem,utilization.gpu,temperature.gpu")
    if apps is None and gpus is None:
        return None
    mine = os.getpid()
    others = [a for a in (apps or []) if a.split(",")[0].strip() != str(mine)]
    return {"other_processes": others, "gpus": gpus or []}


def snapshot(*, with_gpu: bool = False) -> dict[str, Any]:
    """What a results file records of the host at one instant (see the module docstring); the
    CPU counters are the raw material of `others_cores` between two snapshots."""
    sample = cpu_sample()
    out: dict[str, Any] = {
        "time": time.time(),
        "monotonic": sample.wall,
        "machine_busy_s": sample.machine_busy_s,
        "own_s": sample.own_s,
        "load_average": load_average(),
        "cores": cores(),
        "governor": governor(),
        **thread_settings(),
    }
    if with_gpu:
        out["gpu"] = gpu_state()
    return out


def between(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """Other processes' CPU time (seconds) and average cores between two `snapshot`s."""
    a = CpuSample(start["monotonic"], start.get("machine_busy_s"), start.get("own_s"))
    b = CpuSample(end["monotonic"], end.get("machine_busy_s"), end.get("own_s"))
    spent, used = others_cpu_s(a, b), others_cores(a, b)
    return {"others_cpu_s": None if spent is None else round(spent, 2),
            "others_cores": None if used is None else round(used, 3),
            "wall_s": round(b.wall - a.wall, 2)}
