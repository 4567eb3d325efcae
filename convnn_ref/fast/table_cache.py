"""Cached position tables: the table (`convnn_ref.table`) depends only on the geometry, the
selection knobs and the device, so it is computed once per shape (LRU, 64 entries) together
with its shift structure (`shifted.py`). Random candidate draws are never cached, nor tables
computed under non-default block sizes (`plan.use_block_sizes`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from convnn_ref.config import ConvNNConfig
from convnn_ref.fast.plan import DEFAULT_BLOCK_SIZES, block_sizes
from convnn_ref.fast.shifted import ShiftStructure, shift_structure
from convnn_ref.positions import Geometry
from convnn_ref.table import compute_position_table

_TABLE_CACHE_SIZE = 64


@dataclass(frozen=True)
class PositionPlan:
    """A position-basis table: index and scores ``(Nq, k)`` and its shift structure."""

    index: torch.Tensor
    score: torch.Tensor
    shifts: ShiftStructure | None


_plan_cache: OrderedDict[tuple, PositionPlan] = OrderedDict()


def position_plan(
    geometry: Geometry, config: ConvNNConfig, device: torch.device, candidates: torch.Tensor | None
) -> PositionPlan:
    """The table of ``geometry`` and ``config`` on ``device``, from the cache when it is there."""
    chunk_bytes = block_sizes().table_chunk_bytes
    if candidates is not None and config.candidates == "random":
        index, score = compute_position_table(geometry, config, device, candidates, chunk_bytes=chunk_bytes)
        return PositionPlan(index, score, None)
    if block_sizes() != DEFAULT_BLOCK_SIZES:  # the test knob: every call computes its table in chunks
        index, score = compute_position_table(geometry, config, device, candidates, chunk_bytes=chunk_bytes)
        return PositionPlan(index, score, shift_structure(index, geometry.padded, geometry.out))
    key = (
        geometry,
        config.k,
        config.kernel_size is not None,  # kernel scaling applies only with a kernel_size
        config.metric,
        config.coordinates,
        config.kernel_scaled,
        config.self_slot,
        config.slot_order,
        config.candidates,
        config.num_candidates,
        config.grid_margin,
        config.grid_rounding,
        None if candidates is None else tuple(candidates.tolist()),  # a caller's own subset (position_table's cand_index)
        str(device),
    )
    plan = _plan_cache.get(key)
    if plan is not None:
        _plan_cache.move_to_end(key)
        return plan
    index, score = compute_position_table(geometry, config, device, candidates, chunk_bytes=chunk_bytes)
    plan = PositionPlan(index, score, shift_structure(index, geometry.padded, geometry.out))
    _plan_cache[key] = plan
    if len(_plan_cache) > _TABLE_CACHE_SIZE:
        _plan_cache.popitem(last=False)
    return plan
