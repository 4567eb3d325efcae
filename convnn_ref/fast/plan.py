"""Memory budgets, query chunks, block sizes and the one parameter object of the token routes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from convnn_ref.config import ConvNNConfig
from convnn_ref.select import SelectionRule

#: Bytes the score blocks of one query chunk may take (two ``B * chunk * M`` blocks). 32 MiB
#: keeps a 128x128 map with B = 8 well within a few GiB in every mode, and the peak memory of
#: feature mode within a small multiple of its output.
DEFAULT_MEMORY_BUDGET = 32 * 2**20

#: On CUDA, kernel launches rather than cache misses dominate small chunks: 1 GiB.
DEFAULT_CUDA_MEMORY_BUDGET = 2**30

#: The sum kernel switches to the dense route when k is at least this fraction of the
#: candidates (gathering k rows then costs more than one matrix product over all of them).
DENSE_SUM_FRACTION = 1 / 16


def default_memory_budget(device: torch.device) -> int:
    """Bytes of score blocks per query chunk when the caller sets none: 32 MiB on the CPU
    (cache-sized chunks, peak memory a small multiple of the output), 1 GiB on CUDA."""
    return DEFAULT_CUDA_MEMORY_BUDGET if device.type == "cuda" else DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class BlockSizes:
    """The sizes of every blocked or chunked loop of the fast routes.

    gather_block_bytes: one gathered block of the no-grad full-kernel aggregation (a cache-sized
    block of one sample's queries); column_block_bytes and min_block_columns: one column block of
    the shifted route's stacked taps; tile_queries x tile_columns: one score tile of the
    engine's fused search; table_chunk_bytes: position scores per query chunk while a position
    table is computed (tables are cached only at the default sizes); max_chunk_queries: at most
    this many queries per chunk of the token routes whatever the memory budget (None: the budget
    alone decides)."""

    gather_block_bytes: int = 2**20
    column_block_bytes: int = 2**21
    min_block_columns: int = 64
    tile_queries: int = 512
    tile_columns: int = 1024
    table_chunk_bytes: int = 32 * 2**20
    max_chunk_queries: int | None = None


#: The sizes the routes run with.
DEFAULT_BLOCK_SIZES = BlockSizes()

#: Sizes that split a map of a few dozen tokens into several blocks and chunks on every blocked
#: route (a handful of rows, columns or queries each, odd so that the last block is partial).
SMALL_BLOCK_SIZES = BlockSizes(
    gather_block_bytes=512,
    column_block_bytes=256,
    min_block_columns=3,
    tile_queries=5,
    tile_columns=7,
    table_chunk_bytes=1,
    max_chunk_queries=3,
)

_block_sizes: ContextVar[BlockSizes] = ContextVar("convnn_block_sizes", default=DEFAULT_BLOCK_SIZES)


def block_sizes() -> BlockSizes:
    """The block sizes in effect (`DEFAULT_BLOCK_SIZES` unless `use_block_sizes` says otherwise)."""
    return _block_sizes.get()


@contextmanager
def use_block_sizes(sizes: BlockSizes = SMALL_BLOCK_SIZES) -> Iterator[BlockSizes]:
    """Within the block, the fast routes run with ``sizes`` (a test knob: small maps then cross
    every block and chunk boundary; the function computed is the same)."""
    token = _block_sizes.set(sizes)
    try:
        yield sizes
    finally:
        _block_sizes.reset(token)


def chunk_size(b: int, m: int, element_size: int, budget: int) -> int:
    """Queries per chunk so that two ``(B, chunk, M)`` score blocks fit the budget (and at most
    `BlockSizes.max_chunk_queries`)."""
    chunk = max(1, budget // max(1, b * m * element_size * 2))
    cap = block_sizes().max_chunk_queries
    return chunk if cap is None else min(chunk, cap)


@dataclass(frozen=True)
class TokenCall:
    """One feature/hybrid ConvNN call on tokens, as the token routes take it.

    queries ``(B, Nq, D)``: the queries' scoring features; keys ``(B, T, D)``: every token's
    scoring features; values ``(B, T, C)``; rule: step 2's `SelectionRule` (k, candidate
    subset, own tokens); allowed: bool ``(B|1, Nq, T)`` or None (masks); weight and bias of
    step 3; budget: bytes of score blocks per query chunk; dropout_p: on the rho weights;
    channels_first: output ``(B, C_out, Nq)`` instead of ``(B, Nq, C_out)``.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    config: ConvNNConfig
    rule: SelectionRule
    budget: int
    allowed: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    dropout_p: float = 0.0
    channels_first: bool = False

    @property
    def num_candidates(self) -> int:
        candidates = self.rule.candidates
        return self.keys.shape[1] if candidates is None else candidates.shape[0]
