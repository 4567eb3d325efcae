"""Memory budgets, query chunks and the one parameter object of the token routes."""

from __future__ import annotations

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


def chunk_size(b: int, m: int, element_size: int, budget: int) -> int:
    """Queries per chunk so that two ``(B, chunk, M)`` score blocks fit the budget."""
    return max(1, budget // max(1, b * m * element_size * 2))


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
