"""The position basis's neighbour table: steps 1 and 2 on positions alone.

Position scores do not depend on the features, so the selection is a table ``(Nq, k)`` shared
by every sample: score every (query, candidate) pair (`scores.position_scores`), select
(`select.select`, the dilation lattice restricting each query's candidates), then recompute the
selected scores from the index. `convnn_ref.fast.table_cache` caches the table per shape; the
suite checks it against the naive oracle's selection.
"""

from __future__ import annotations

import torch

from convnn_ref import positions, scores, select
from convnn_ref.config import ConvNNConfig
from convnn_ref.positions import Geometry

#: Bytes of position scores per query chunk while a table is computed (by default).
TABLE_CHUNK_BYTES = 32 * 2**20


def compute_position_table(
    geometry: Geometry,
    config: ConvNNConfig,
    device: torch.device,
    candidates: torch.Tensor | None = None,
    *,
    chunk_bytes: int = TABLE_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The position-basis neighbour table: index ``(Nq, k)`` into the padded grid's tokens and
    the selected scores ``(Nq, k)`` float64. candidates: a subset of the padded grid's tokens
    ``(M,)`` (random or grid candidates), or None for all of them. Chunked over queries, at
    most ``chunk_bytes`` of position scores a chunk."""
    grid_pos = positions.candidate_positions(geometry, device)  # (T, d) int64
    cand_pos = grid_pos if candidates is None else grid_pos[candidates]
    origins = positions.query_origins(geometry, device)
    centres = positions.query_centres(geometry, device)
    axis_unit = positions.axis_unit(geometry, config, device)
    rule = select.selection_rule(
        config,
        grid_pos.shape[0],
        candidates=candidates,
        own=positions.query_tokens(geometry, device) if config.self_slot == "forced" else None,
        offsets=(grid_pos.to(torch.float64), centres) if config.slot_order == "offset" else None,
        what="candidate points",
    )
    lattice_step = torch.tensor(geometry.dilation, device=device)
    dilated = any(dl > 1 for dl in geometry.dilation)
    cand_exact = cand_pos.to(torch.float64)
    m, nq = cand_pos.shape[0], centres.shape[0]
    chunk = max(1, chunk_bytes // (8 * max(m, 1) * 4))
    parts = []
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        s = scores.position_scores(centres[start:stop], cand_exact, config.metric, axis_unit)
        lattice = None
        if dilated:
            rel = cand_pos[None, :, :] - origins[start:stop, None, :]
            lattice = (rel.remainder(lattice_step) == 0).all(dim=-1)
        parts.append(select.select(s, rule, slice(start, stop), lattice=lattice).index)
    index = torch.cat(parts) if parts else torch.zeros(0, rule.k, dtype=torch.int64, device=device)
    score = scores.paired_position_scores(centres[:, None, :], grid_pos[index].to(torch.float64), config.metric, axis_unit)
    return index, score
