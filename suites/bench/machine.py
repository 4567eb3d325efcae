"""Machine and commit information for a benchmark file: what pytest-benchmark records, plus
CPU model and threads, GPU name, memory, driver and CUDA version, and the torch version."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import torch


def extra_machine_info() -> dict[str, Any]:
    """The fields this suite adds to pytest-benchmark's ``machine_info``."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_threads": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "gpus": [],
        # The feature/hybrid selection engine in force (convnn_ref/fast/engine.py) and faiss.
        "select_engine": os.environ.get("CONVNN_SELECT_ENGINE", "") or "auto",
        "faiss_version": _faiss_version(),
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "memory_bytes": p.total_memory, "capability": f"{p.major}.{p.minor}"})
        info["gpu_driver"] = _nvidia_driver()
    return info


def machine_info() -> dict[str, Any]:
    """pytest-benchmark's machine info (node, processor, python, cpu) with the fields above."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    info = dict(pytest_benchmark_generate_machine_info())
    info.update(extra_machine_info())
    return info


def commit_info() -> dict[str, Any]:
    """pytest-benchmark's commit info (id, dirty, branch, ...) for the working directory."""
    from pytest_benchmark.utils import get_commit_info

    return dict(get_commit_info())


def _faiss_version() -> str | None:
    try:
        import faiss
    except ImportError:
        return None
    return str(getattr(faiss, "__version__", "unknown"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
