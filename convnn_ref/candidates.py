"""Candidate sets shared by every query: a random draw or a regular subgrid (`ConvNNConfig`,
"Candidates").

`candidate_subset` returns token indices, ascending, or None for all tokens; masks (causal,
key padding) and dilation lattices, which differ per query, are applied where scores are made.
"""

from __future__ import annotations

import torch

from convnn_ref import positions
from convnn_ref.config import ConvNNConfig


def candidate_subset(
    config: ConvNNConfig, spatial: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor | None:
    """Token indices ``(M,)`` of a random or grid candidate set, ascending; None for all."""
    n = 1
    for s in spatial:
        n *= s
    if config.candidates == "all":
        return None
    if config.candidates == "window":
        raise ValueError(
            "candidates='window' is neighbourhood attention over queries, keys and values on one grid: "
            "call convnn_ref.window_attention (or neighborhood_attention), not the image or sequence form"
        )
    r = config.num_candidates
    assert r is not None
    if config.candidates == "random":
        if generator is None:
            raise ValueError("candidates='random' needs an explicit torch.Generator (generator=...)")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if r > n:
            raise ValueError(f"num_candidates={r} is larger than the number of tokens N={n}")
        return torch.randperm(n, generator=generator)[:r].sort().values.to(device)
    return positions.grid_subset(spatial, r, config.grid_margin, config.grid_rounding, device)
