"""Process memory stays flat with autograd on: a feature-mode forward and backward over a large
map grows the process's peak RSS by at most twice what the same forward without autograd grows
it (each measured in a fresh process by `memory_probe`).

Chunk buffers of changing size, freed between the small tensors autograd keeps, once fragmented
the heap until a 1x4x512x512 forward held 7 GiB while its saved tensors took a few MiB; the
routes now reuse one score buffer per call, and the faiss engine keeps no score block at all.

The 128x128 cases take a second or two each; the 256x256 case (the benchmark's bar, about 15 s:
its 65536² pairs) runs too. All of them run in every ``make verify``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Growths below this are noise (libraries' first-use buffers, the output): never a failure.
FLOOR = 48 * 2**20


def _growth(side: int, engine: str, grad: bool) -> dict:
    cmd = [sys.executable, "-m", "suites.bench.memory_probe", "--side", str(side), "--engine", engine]
    if grad:
        cmd.append("--grad")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _check(side: int, engine: str) -> None:
    if engine == "faiss" and not _faiss_installed():
        pytest.skip("faiss is not installed")
    plain = _growth(side, engine, grad=False)
    grad = _growth(side, engine, grad=True)
    mib = {name: round(r["growth"] / 2**20, 1) for name, r in (("no_grad", plain), ("grad", grad))}
    assert grad["growth"] <= 2 * max(plain["growth"], FLOOR), f"RSS growth with autograd {mib} ({grad['method']})"


@pytest.mark.parametrize("engine", ["torch", "faiss"])
def test_rss_flat_with_autograd(engine: str) -> None:
    """1x4x128x128 feature mode: RSS growth with autograd <= 2x the no-grad run's (floor 48 MiB)."""
    _check(128, engine)


def test_rss_flat_with_autograd_256() -> None:
    """The benchmark's bar: 1x4x256x256 feature mode, default engine, growth with autograd <= 2x."""
    _check(256, "auto")
