"""The testing API: what test suites and third-party adapters may use besides the public API
(`convnn_ref` and `convnn_ref.config`). Everything else in the package is internal and may move.

- The oracle: `naive_convnn` (image form) and `naive_attention` (sequence form), deliberately
  naive, loop-based implementations of `ConvNNConfig`, written independently of the reference.
  Small inputs only.
- Geometry: `resolve_geometry` and `Geometry`: the padded candidate grid and the query grid of
  a configuration on an input shape (what an adapter needs to lay out its own output).
- The argument checks an adapter needs to raise the reference's errors: `check_k` (k against a
  candidate count), `check_mask` (a boolean ``allowed`` mask), `check_tensor`, `check_weight`,
  `as_allowed` (PyTorch attention masks, bool or 0/-inf float, as *allowed*).
- The position table: `position_table`, the selection of the position basis as a table
  ``(Nq, k)`` (index into the padded grid, scores), and `Neighbours`, what the selection
  functions return.
- The window rule (neighbourhood attention): `naive_window_attention` (the oracle),
  `window_geometry` (the knobs checked against a grid) and `window_mask` (the dense ``(N, N)``
  candidate matrix of a small grid: what SDPA and FlexAttention baselines are given).
- `scoring_features`: the per-token vectors feature and hybrid scores are taken on (coordinate
  channels and the hybrid embedding included), for error models that need their size.
- `small_blocks()`: a context manager under which every blocked or chunked loop of the
  reference (gather blocks, shifted-route column blocks, the engine's tiles, query chunks,
  position-table chunks) runs a few rows at a time, so that small inputs cross every block
  boundary; `BlockSizes` and `use_block_sizes` to choose other sizes. The function computed is
  the same at any size.

The error messages name the argument and the constraint (docs/semantics.md, "Errors").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from convnn_ref.fast.plan import DEFAULT_BLOCK_SIZES, SMALL_BLOCK_SIZES, BlockSizes, block_sizes, use_block_sizes
from convnn_ref.functional import position_table, scoring_features
from convnn_ref.naive import naive_attention, naive_convnn, naive_window_attention
from convnn_ref.positions import Geometry, resolve_geometry
from convnn_ref.select import Neighbours
from convnn_ref.validation import as_allowed, check_k, check_mask, check_tensor, check_weight
from convnn_ref.window import window_geometry, window_mask

__all__ = [
    "DEFAULT_BLOCK_SIZES",
    "SMALL_BLOCK_SIZES",
    "BlockSizes",
    "Geometry",
    "Neighbours",
    "as_allowed",
    "block_sizes",
    "check_k",
    "check_mask",
    "check_tensor",
    "check_weight",
    "naive_attention",
    "naive_convnn",
    "naive_window_attention",
    "position_table",
    "resolve_geometry",
    "scoring_features",
    "small_blocks",
    "use_block_sizes",
    "window_geometry",
    "window_mask",
]


@contextmanager
def small_blocks() -> Iterator[BlockSizes]:
    """Within the block the reference runs with `SMALL_BLOCK_SIZES` (see `use_block_sizes`)."""
    with use_block_sizes(SMALL_BLOCK_SIZES) as sizes:
        yield sizes
