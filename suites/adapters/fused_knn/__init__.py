"""A fused CPU kernel for feature-basis ConvNN (C++, `fused_knn.cpp`): per query, score every
candidate, keep a running top-k, aggregate; the score matrix is never written. Compiled on first
use with ``torch.utils.cpp_extension.load`` (gcc and the Python headers), cached by PyTorch in its
extensions folder. `adapter.FusedKNN` is the implementation the suites and the sweep load."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

_module: ModuleType | None = None


def kernel() -> ModuleType:
    """The compiled extension (built on first call, a minute or so; cached afterwards)."""
    global _module
    if _module is None:
        from torch.utils.cpp_extension import load

        source = Path(__file__).with_name("fused_knn.cpp")
        _module = load(name="convnn_fused_knn", sources=[str(source)], extra_cflags=["-O3", "-march=native", "-fopenmp"],
                       extra_ldflags=["-fopenmp"], verbose=False)
    return _module
