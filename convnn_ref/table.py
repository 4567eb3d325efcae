"""The position basis's neighbour table: data-independent, computed once per shape by the
generic score-then-top-k of SPEC §1 and cached.

The table depends only on the geometry, the selection knobs and the device, so `position_plan`
caches it (LRU, 64 entries) together with its shift structure (`shifted.py`). Random candidate
draws are never cached. The suite checks the table against the naive oracle's selection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from convnn_ref import positions, scores, select
from convnn_ref.config import ConvNNConfig
from convnn_ref.positions import Geometry
from convnn_ref.shifted import ShiftStructure, shift_structure
from convnn_ref.validation import check_k

_TABLE_CACHE_SIZE = 64

#: Bytes of position scores per query chunk while a table is computed.
_TABLE_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class PositionPlan:
    """A cached position-basis table: index and scores ``(Nq, k)`` and its shift structure."""

    index: torch.Tensor
    score: torch.Tensor
    shifts: ShiftStructure | None


_plan_cache: OrderedDict[tuple, PositionPlan] = OrderedDict()


def position_table(
    geometry: Geometry,
    config: ConvNNConfig,
    device: torch.device,
    cand_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The position-basis neighbour table: index ``(Nq, k)`` into the padded grid and the
    selected scores ``(Nq, k)`` float64, by the generic score-then-top-k of SPEC §1.

    Data-independent, so cached (LRU, 64 entries) by geometry, the selection knobs and the
    device, unless the candidates are a random draw. `position_table_uncached` computes it.
    """
    plan = position_plan(geometry, config, device, cand_index)
    return plan.index, plan.score


def position_plan(
    geometry: Geometry, config: ConvNNConfig, device: torch.device, cand_index: torch.Tensor | None
) -> PositionPlan:
    if cand_index is not None and config.candidates == "random":
        index, score = position_table_uncached(geometry, config, device, cand_index)
        return PositionPlan(index, score, None)
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
        str(device),
    )
    plan = _plan_cache.get(key)
    if plan is not None:
        _plan_cache.move_to_end(key)
        return plan
    index, score = position_table_uncached(geometry, config, device, cand_index)
    plan = PositionPlan(index, score, shift_structure(index, geometry.padded, geometry.out))
    _plan_cache[key] = plan
    if len(_plan_cache) > _TABLE_CACHE_SIZE:
        _plan_cache.popitem(last=False)
    return plan


def position_table_uncached(
    geometry: Geometry,
    config: ConvNNConfig,
    device: torch.device,
    cand_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`position_table` without the cache: scores every (query, candidate) pair in chunks."""
    grid_pos = positions.candidate_positions(geometry, device)  # (M_grid, d) int64
    cand_pos = grid_pos if cand_index is None else grid_pos[cand_index]
    m = cand_pos.shape[0]
    origins = positions.query_origins(geometry, device)
    centres = positions.query_centres(geometry, device)
    cand_exact = cand_pos.to(torch.float64)
    steps = positions.coordinate_steps(geometry, config.coordinates)
    if config.kernel_size is not None and config.kernel_scaled:
        # Kernel scaling: distances in units of dilation*K/2 grid steps, whatever the coordinates.
        unit = [dl * kk / 2 for dl, kk in zip(geometry.dilation, geometry.kernel)]
        axis_scale = torch.tensor([1.0 / u for u in unit], dtype=torch.float64, device=device)
    else:
        axis_scale = torch.tensor(steps, dtype=torch.float64, device=device)
    lattice = torch.tensor(geometry.dilation, device=device)
    dilated = any(dl > 1 for dl in geometry.dilation)
    forced = config.self_slot == "forced"
    own_grid = _own_tokens(centres, geometry) if forced else None
    k_select = config.k - 1 if forced else config.k
    nq = centres.shape[0]
    chunk = max(1, _TABLE_CHUNK_BYTES // (8 * max(m, 1) * 4))
    idx_parts, score_parts = [], []
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        s = scores.position_scores(centres[start:stop], cand_exact, config.metric, axis_scale)
        if dilated:
            rel = cand_pos[None, :, :] - origins[start:stop, None, :]
            s = s.masked_fill(~(rel.remainder(lattice) == 0).all(dim=-1), float("-inf"))
        if own_grid is not None:
            cand_grid = torch.arange(m, device=device) if cand_index is None else cand_index
            s = s.masked_fill(cand_grid[None, :] == own_grid[start:stop, None], float("-inf"))
        available = int((s > float("-inf")).sum(dim=-1).min())
        what = "candidate points" + (" besides the query itself" if forced else "") + (" on its dilation lattice" if dilated else "")
        check_k(k_select, available, what)
        if k_select > 0:
            v, i = select.topk_lowest_index(s, k_select)
        else:
            v = s.new_zeros(stop - start, 0)
            i = torch.zeros(stop - start, 0, dtype=torch.int64, device=device)
        idx_parts.append(i if cand_index is None else cand_index[i])
        score_parts.append(v)
    index = torch.cat(idx_parts)
    score = torch.cat(score_parts)
    if own_grid is not None:
        index = torch.cat([own_grid[:, None], index], dim=-1)
        score = torch.cat([score.new_zeros(nq, 1), score], dim=-1)
    if config.slot_order == "offset":
        offsets = grid_pos[index].to(torch.float64) - centres[:, None, :]
        order = select.order_by_offset(torch.arange(index.shape[1], device=device).expand_as(index), offsets)
        index = index.gather(-1, order)
        score = score.gather(-1, order)
    return index, score


def _own_tokens(centres: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Grid index ``(Nq,)`` of the token at each query's position (forced self)."""
    if bool((centres != centres.round()).any()):
        raise ValueError("self_slot='forced' needs queries on tokens: an even kernel_size puts them between tokens")
    lo = torch.tensor([p[0] for p in geometry.padding], device=centres.device)
    return positions.flat_index(centres.round().to(torch.int64) + lo, geometry.padded)
