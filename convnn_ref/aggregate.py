"""Step 3 of ConvNN: rho weights, gathering by index, and the aggregation kernels
(`ConvNNConfig`, "Step 3").

Layout: values are token-major ``(B, M, C)``; neighbours are gathered by index into
``(B, Nq, k, C)`` (never by expanding values to ``(B, C, N, k)``), and the full/grouped
kernels are one matrix product over the flattened ``(k, C)`` axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convnn_ref.config import ConvNNConfig


def rho_weights(scores: torch.Tensor, valid: torch.Tensor | None, rho: str, rho_scale: float = 1.0) -> torch.Tensor:
    """Per-slot weights. scores ``(..., k)``, valid ``(..., k)`` bool or None (all valid).

    ones: 1 on valid slots; softmax: ``softmax(rho_scale * s)`` over the valid slots (a row
    with none valid is all zero); scores: the raw scores on valid slots. Returns ``(..., k)``.
    """
    _check_rho_scale(rho, rho_scale)
    if rho == "ones":
        w = torch.ones_like(scores)
        return w if valid is None else w * valid
    if rho == "scores":
        return scores if valid is None else scores.masked_fill(~valid, 0.0)
    if rho == "softmax":
        logits = scores if rho_scale == 1.0 else rho_scale * scores
        if valid is None:
            return torch.softmax(logits, dim=-1)
        logits = logits.masked_fill(~valid, float("-inf"))
        w = torch.softmax(logits, dim=-1)
        return w.masked_fill(~valid.any(dim=-1, keepdim=True), 0.0)
    raise ValueError(f"rho={rho!r} is not one of ('ones', 'softmax', 'scores')")


def _check_rho_scale(rho: str, rho_scale: float) -> None:
    if rho_scale != 1.0 and rho != "softmax":
        raise ValueError(f"rho_scale={rho_scale!r} has no effect here and is refused: only rho='softmax' scales its scores, got rho={rho!r}")


def gather_neighbours(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values ``(B, M, C)``, index ``(B, Nq, k)`` or ``(Nq, k)`` (shared by the batch), int64
    into M -> ``(B, Nq, k, C)``: one ``index_select`` on the flattened ``(B*M, C)`` rows."""
    b, m, c = values.shape
    nq, k = index.shape[-2:]
    offsets = torch.arange(0, b * m, m, device=values.device)[:, None, None]
    flat = (index + offsets).reshape(-1)
    return values.reshape(b * m, c).index_select(0, flat).reshape(b, nq, k, c)


def aggregate(
    neighbours: torch.Tensor,
    score: torch.Tensor | None,
    valid: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    config: ConvNNConfig,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Step 3, ``y = b + sum_t A_t (rho_t v_t)`` over the filled slots.

    neighbours ``(B, Nq, k, C)`` gathered values; score ``(B|1, Nq, k)`` the selected scores
    (None when rho is 'ones'); valid bool like score or None (every slot filled): an empty slot
    contributes exactly nothing. ``dropout_p`` drops rho weights with torch's global RNG.
    Returns ``(B, Nq, C_out)``.
    """
    w = None
    if config.rho != "ones":
        assert score is not None
        w = rho_weights(score.to(neighbours.dtype), valid, config.rho, config.rho_scale)
    if dropout_p > 0:
        w = F.dropout(torch.ones(neighbours.shape[:-1], dtype=neighbours.dtype, device=neighbours.device) if w is None else w, dropout_p)
    if w is not None:
        neighbours = neighbours * w[..., None]
    if valid is not None:
        # An empty slot contributes nothing, not 0 times its (possibly infinite or NaN) value.
        neighbours = neighbours.masked_fill(~valid[..., None], 0.0)
    return apply_kernel(neighbours, weight, bias, config.kernel, config.groups)


def kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d-layout weight ``(C_out, C_in/g, k)`` -> ``(k * C_in/g, C_out)``, rows ordered
    slot-major to match a flattened ``(k, C)`` neighbour block."""
    c_out = weight.shape[0]
    return weight.permute(2, 1, 0).reshape(-1, c_out)


def apply_kernel(neighbours: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, kernel: str, groups: int = 1) -> torch.Tensor:
    """``y = b + sum_t A_t u_t`` for weighted neighbours u ``(B, Nq, k, C_in)``.

    kernel full (groups 1) / grouped: weight ``(C_out, C_in/groups, k)`` as ``nn.Conv1d``;
    sum: weight None, ``C_out = C_in``. Returns ``(B, Nq, C_out)``.
    """
    b, nq, k, c_in = neighbours.shape
    if kernel == "sum" and groups != 1:
        raise ValueError(f"groups={groups} has no effect here and is refused: kernel='sum' has no weight to group")
    if kernel == "sum":
        y = neighbours.sum(dim=2)
    elif groups == 1:
        y = neighbours.reshape(b, nq, k * c_in) @ kernel_matrix(weight)  # type: ignore[arg-type]
    else:
        assert weight is not None
        c_out = weight.shape[0]
        cg_in, cg_out = c_in // groups, c_out // groups
        u = neighbours.reshape(b * nq, k, groups, cg_in).permute(2, 0, 1, 3).reshape(groups, b * nq, k * cg_in)
        w = weight.reshape(groups, cg_out, cg_in, k).permute(0, 3, 2, 1).reshape(groups, k * cg_in, cg_out)
        y = torch.bmm(u, w).permute(1, 0, 2).reshape(b, nq, c_out)
    if bias is not None:
        y = y + bias
    return y


def aggregate_as_conv1d(neighbours: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1) -> torch.Tensor:
    """The research code's view of step 3: lay each query's k weighted neighbours side by side
    in one sequence of length ``Nq * k`` and apply ``Conv1d(kernel_size=k, stride=k)``.

    neighbours ``(B, Nq, k, C_in)``, weight ``(C_out, C_in/groups, k)`` -> ``(B, C_out, Nq)``.
    The same function as `apply_kernel` (the suite checks it); slower, kept for readers.
    """
    b, nq, k, c_in = neighbours.shape
    seq = neighbours.reshape(b, nq * k, c_in).transpose(1, 2)
    return F.conv1d(seq, weight, bias, stride=k, groups=groups)
