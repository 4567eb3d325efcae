"""The independent oracle: a deliberately naive implementation of ConvNN (`ConvNNConfig`).

This module is the gold for every configuration that has no PyTorch twin (cosine selection,
random or grid candidates, hybrid scores, ...). It follows the `ConvNNConfig` docstring line by
line, one query and one slot at a time, and shares no code with the fast path: it imports only
``torch``, the standard library and `convnn_ref.config`.

Small inputs only: O(N^2) Python loops over queries, candidates and slots.

Conventions (the readings this oracle takes where the docstring leaves a choice):

* Geometry is worked out in *padded* indices ``P`` (``P = p + lo`` for a real position ``p``);
  candidate indices, and so the tie rule, are row-major indices in the padded grid. Every
  candidate list is ascending in that index, so "lower index" and "earlier in the list" agree.
* Normalized coordinates of a padded index ``P`` on an axis of padded length ``L`` are
  ``-1 + 2 P / (L - 1)`` (0 when ``L == 1``); the query centre (a half-integer for even kernels)
  uses the same affine map. With ``kernel_scaled`` the unit is ``dilation*K/2`` grid steps
  measured in the coordinate units (one normalized grid step is ``2 / (L - 1)``), so the scaled
  difference equals the integer difference over ``dilation*K/2`` for both coordinate choices.
* Coordinate channels (``coord_encoding``) are the normalized coordinates of the *unpadded*
  axes, 0 on a length-1 axis and 0 at padded points. 'score'/'both' appends them to the features
  wherever features are scored (feature and hybrid bases); the position basis ignores them for
  scoring. 'aggregate'/'both' appends them to the values.
* Feature and hybrid bases with padding: every padded point is a candidate with zero features;
  the queries are the real tokens (padded index ``o*stride + lo``); the output has the real
  query grid's shape.
* Hybrid: ``std`` is ``torch.std`` (Bessel-corrected) over all scored channels and all points of
  the padded grid of one sample, clamped at 1e-12 (a single value counts as std 0). ``u`` are the
  coordinates of ``config.coordinates`` over the padded grid (integer: the padded index),
  without kernel scaling.
* Ranking: NaN first, then descending score (+inf, numbers, -inf); ties, NaN with NaN too, to
  the lower candidate index.
* Random and grid candidates are also restricted to the query's dilation lattice (position
  basis); with dilation 1 this is no restriction.
* ``self_slot='forced'``: the query's own token is the token at the query's position (feature and
  hybrid: ``o*stride``; position: the window centre, which must then be a grid point). It takes
  slot 0 even when it is not a candidate (random candidates) and even when ``allowed`` masks it
  out; ``k`` is checked against ``|Cand(i) ∪ {self}|``.
* ``border`` needs no code: ``border='in_bounds'`` admits no padding, and without padding both
  borders are the same candidate set.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from convnn_ref.config import ConvNNConfig, causal_per_axis, padding_per_axis, per_axis

__all__ = ["naive_attention", "naive_convnn", "naive_window_attention"]

_EPS = 1e-12


# --------------------------------------------------------------------------- small helpers


def _normalized(p: float, length: int) -> float:
    """Affine map of index ``p`` on an axis of ``length`` points onto [-1, 1] (0 if length 1)."""
    if length == 1:
        return 0.0
    return -1.0 + 2.0 * p / (length - 1)


def _similarity(zq: Tensor, zc: Tensor, config: ConvNNConfig) -> Tensor:
    """Feature similarity of one query ``zq`` ``(D,)`` to candidates ``zc`` ``(M, D)``; ``(M,)``."""
    sim = config.similarity
    if sim == "cosine":
        nq = torch.linalg.vector_norm(zq).clamp_min(_EPS)
        nc = torch.linalg.vector_norm(zc, dim=-1).clamp_min(_EPS)
        return (zc * zq).sum(-1) / (nq * nc)
    if sim == "euclidean":
        return -((zc - zq) ** 2).sum(-1)
    if sim == "dot":
        return (zc * zq).sum(-1)
    if sim == "scaled_dot":
        scale = config.scale if config.scale is not None else 1.0 / math.sqrt(zq.shape[-1])
        return (zc * zq).sum(-1) * scale
    raise AssertionError(sim)


def _rank(candidates: list[int], scores: list[float], count: int) -> list[int]:
    """The ``count`` best candidates: NaN first, then descending score (+inf, numbers, -inf),
    ties (NaN with NaN too) to the lower candidate index."""

    def key(sc: tuple[float, int]) -> tuple[int, float, int]:
        score, candidate = sc
        return (0, 0.0, candidate) if math.isnan(score) else (1, -score, candidate)

    order = sorted(zip(scores, candidates, strict=True), key=key)
    return [c for _, c in order[:count]]


def _rho(s: Tensor, config: ConvNNConfig) -> Tensor:
    """Slot weights ``(m,)`` from the selected (non-empty) slots' scores ``s`` ``(m,)``."""
    if config.rho == "ones":
        return torch.ones_like(s)
    if config.rho == "softmax":
        return torch.softmax(config.rho_scale * s, dim=0)
    return s  # "scores"


def _dense_weight(weight: Tensor | None, config: ConvNNConfig, c_in: int) -> Tensor | None:
    """``(C_out, C_in, k)`` matrices A_t (grouped weights made block-diagonal), or None for 'sum'."""
    if config.kernel == "sum":
        if weight is not None:
            raise ValueError("kernel='sum' takes no weight, got a weight tensor")
        return None
    k = config.k
    assert k is not None  # the config refuses k=None with a weighted kernel
    if weight is None:
        raise ValueError(f"kernel={config.kernel!r} needs a weight of shape (C_out, C_in/groups, k)")
    g = config.groups if config.kernel == "grouped" else 1
    if c_in % g != 0:
        raise ValueError(f"C_in={c_in} (coordinate channels included) is not divisible by groups={g}")
    c_out = weight.shape[0]
    if weight.dim() != 3 or c_out % g != 0 or tuple(weight.shape[1:]) != (c_in // g, k):
        raise ValueError(
            f"weight has shape {tuple(weight.shape)}, expected (C_out, {c_in // g}, {k}) with C_out "
            f"divisible by groups={g}"
        )
    dense = weight.new_zeros(c_out, c_in, k)
    out_per_group, in_per_group = c_out // g, c_in // g
    for grp in range(g):
        o0, i0 = grp * out_per_group, grp * in_per_group
        dense[o0 : o0 + out_per_group, i0 : i0 + in_per_group, :] = weight[o0 : o0 + out_per_group]
    return dense


def _aggregate(values: Tensor, rho: Tensor, dense: Tensor | None, bias: Tensor | None, c_out: int) -> Tensor:
    """``y = b + sum_t A_t (rho_t v_t)`` over the filled slots; ``values`` ``(m, C_in)`` -> ``(C_out,)``."""
    y = values.new_zeros(c_out) if bias is None else bias.clone()
    for t in range(values.shape[0]):
        term = rho[t] * values[t]
        y = y + (term if dense is None else dense[:, :, t] @ term)
    return y


def _check_bias(bias: Tensor | None, c_out: int) -> None:
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({c_out},)")


def _check_k(k: int, count: int, where: str) -> None:
    if k > count:
        raise ValueError(f"k={k} exceeds the {count} candidates of {where}")


# --------------------------------------------------------------------------- image-like form


def naive_convnn(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    config: ConvNNConfig,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ConvNN on image-like input, one query and one slot at a time (small inputs only).

    Args:
        x: ``(B, C_in, *S)`` with 1 to 3 spatial axes.
        weight: ``(C_out, C_in_eff / groups, k)`` (``C_in_eff`` counts the coordinate channels of
            ``coord_encoding`` 'aggregate'/'both'); None for ``kernel='sum'``.
        bias: ``(C_out,)`` or None.
        config: the semantics (`ConvNNConfig`).
        generator: required for ``candidates='random'`` (one CPU ``randperm`` per call, shared by
            every query and every sample).

    Returns:
        ``(B, C_out, *S_out)``; ``C_out = C_in_eff`` for ``kernel='sum'``. Differentiable in ``x``,
        ``weight`` and ``bias``; the selection itself is made on detached values.
    """
    d = x.dim() - 2
    if d not in (1, 2, 3):
        raise ValueError(f"x must have shape (B, C, *S) with 1 to 3 spatial axes, got {tuple(x.shape)}")
    batch, c = x.shape[0], x.shape[1]
    size = tuple(x.shape[2:])
    position = config.basis == "position"
    ksize = per_axis(config.kernel_size, d, "kernel_size")
    stride = per_axis(config.stride, d, "stride")
    dil = per_axis(config.dilation, d, "dilation")
    pad = padding_per_axis(config.padding, d)
    lo = tuple(p[0] for p in pad)
    length = tuple(size[a] + pad[a][0] + pad[a][1] for a in range(d))  # padded lengths L

    # Padded grid: point n (row-major) has padded index points[n]; real position points[n] - lo.
    points = list(itertools.product(*(range(n) for n in length)))
    n_pad = len(points)
    index_of = {p: n for n, p in enumerate(points)}
    real = [all(lo[a] <= p[a] < lo[a] + size[a] for a in range(d)) for p in points]

    # Features of every padded point, (B, N_pad, C): zeros at padded points.
    xp = x.new_zeros(batch, c, *length)
    xp[(slice(None), slice(None), *(slice(lo[a], lo[a] + size[a]) for a in range(d)))] = x
    feats = xp.reshape(batch, c, n_pad).transpose(1, 2)

    # Coordinate channels, (N_pad, d): normalized over the unpadded axes, zero at padded points.
    coord_rows = [
        [_normalized(p[a] - lo[a], size[a]) for a in range(d)] if real[n] else [0.0] * d
        for n, p in enumerate(points)
    ]
    coord_channels = torch.tensor(coord_rows, dtype=x.dtype, device=x.device).reshape(n_pad, d)
    with_score_coords = config.coord_encoding in ("score", "both")
    with_value_coords = config.coord_encoding in ("aggregate", "both")
    c_in_eff = c + (d if with_value_coords else 0)

    dense = _dense_weight(weight, config, c_in_eff)
    c_out = c_in_eff if dense is None else dense.shape[0]
    _check_bias(bias, c_out)

    # Queries: output multi-index o, query position in padded indices, and its own token (if any).
    # Position basis: windows over the padded grid. Feature and hybrid: the real tokens at
    # positions o*stride of the unpadded grid (padded index o*stride + lo).
    if position:
        out_size = tuple((length[a] - dil[a] * (ksize[a] - 1) - 1) // stride[a] + 1 for a in range(d))
    else:
        out_size = tuple((size[a] - 1) // stride[a] + 1 for a in range(d))
    if any(n < 1 for n in out_size):
        raise ValueError(f"the input {size} padded by {pad} is smaller than the dilated kernel {ksize}")
    queries = []
    for o in itertools.product(*(range(n) for n in out_size)):
        start = tuple(o[a] * stride[a] for a in range(d))  # window start (padded index)
        if position:
            centre = tuple(start[a] + dil[a] * (ksize[a] - 1) / 2 for a in range(d))
        else:
            centre = tuple(float(start[a] + lo[a]) for a in range(d))
        own = None
        if config.self_slot == "forced":
            if any(ct != int(ct) for ct in centre):
                raise ValueError(f"self_slot='forced': the query at {centre} is not a token (even kernel)")
            own = index_of[tuple(int(ct) for ct in centre)]
        queries.append((start, centre, own))

    # Base candidate list (row-major indices in the padded grid, ascending).
    if config.candidates == "all":
        base = list(range(n_pad))
    elif config.candidates == "random":
        if generator is None:
            raise ValueError("candidates='random' needs a torch.Generator (generator=None)")
        drawn = torch.randperm(n_pad, generator=generator)[: config.num_candidates]
        base = sorted(int(j) for j in drawn)
    else:  # grid
        per_axis_pts = []
        for a in range(d):
            m = config.grid_margin
            if 2 * m > length[a] - 1:
                raise ValueError(f"grid_margin={m} leaves no room on an axis of length {length[a]}")
            if config.grid_rounding == "round":
                pts = torch.linspace(m, length[a] - 1 - m, config.num_candidates, dtype=torch.float64).round().tolist()
            else:  # "truncate": float32 linspace, truncated toward zero
                pts = [math.trunc(v) for v in torch.linspace(m, length[a] - 1 - m, config.num_candidates, dtype=torch.float32).tolist()]
            per_axis_pts.append(sorted({int(v) for v in pts}))
        base = [index_of[p] for p in itertools.product(*per_axis_pts)]

    # Position scores use the coordinates only (no gradient).
    def position_scores(centre: tuple[float, ...], cands: list[int]) -> Tensor:
        diffs = []
        for j in cands:
            row = []
            for a in range(d):
                # The integer (or half-integer) difference first, then divided by how many
                # grid steps make one unit: a correctly rounded quotient, so equidistant points
                # get bit-identical scores and the tie rule decides, not rounding. With kernel
                # scaling the coordinate unit cancels: half-windows of dilation*K/2 steps.
                du = points[j][a] - centre[a]
                if config.kernel_size is not None and config.kernel_scaled:
                    du = du / (dil[a] * ksize[a] / 2)
                elif config.coordinates == "normalized":
                    du = du / ((length[a] - 1) / 2) if length[a] > 1 else 0.0
                row.append(du)
            diffs.append(row)
        du_t = torch.tensor(diffs, dtype=torch.float64, device=x.device).reshape(len(cands), d)
        if config.metric == "chebyshev":
            return -du_t.abs().amax(dim=-1)
        return -torch.sqrt((du_t**2).sum(-1))

    # Hybrid coordinates u of every padded point: its padded index, or normalized over the padded axis.
    u_rows = [
        [float(p[a]) if config.coordinates == "integer" else _normalized(p[a], length[a]) for a in range(d)]
        for p in points
    ]
    u = torch.tensor(u_rows, dtype=x.dtype, device=x.device).reshape(n_pad, d)

    def scoring_features(f: Tensor) -> Tensor:
        """Per-token vectors the feature similarity is taken on, ``(N_pad, D)``."""
        if with_score_coords:
            f = torch.cat([f, coord_channels], dim=1)
        if config.basis == "hybrid":
            std = f.std() if f.numel() > 1 else f.new_zeros(())
            lam = config.hybrid_lambda
            f = torch.cat([lam * f / std.clamp_min(_EPS), (1.0 - lam) * u], dim=1)
        return f

    def scores(centre: tuple[float, ...], of: list[int], table: Tensor | None) -> Tensor:
        """Scores of the query at ``centre`` to the candidates ``of``, ``(len(of),)``."""
        if position or table is None:
            return position_scores(centre, of)
        q_index = index_of[tuple(int(ct) for ct in centre)]  # feature/hybrid: the query is a token
        return _similarity(table[q_index], table[of], config)

    outputs = []
    for b in range(batch):
        values = torch.cat([feats[b], coord_channels], dim=1) if with_value_coords else feats[b]
        z_sel = z = None
        if not position:
            z_sel = scoring_features(feats[b].detach())  # for the selection
            z = scoring_features(feats[b])  # for rho, with grad
        for start, centre, own in queries:
            cands = base
            if position:
                cands = [j for j in base if all((points[j][a] - start[a]) % dil[a] == 0 for a in range(d))]
            count = len(set(cands) | {own}) if own is not None else len(cands)
            k = count if config.k is None else config.k  # None: every candidate
            _check_k(k, count, f"the query at padded position {centre}")

            if own is not None:
                others = [j for j in cands if j != own]
                s_det = scores(centre, others, z_sel).tolist()
                chosen = [own, *_rank(others, s_det, k - 1)]
            else:
                s_det = scores(centre, cands, z_sel).tolist()
                chosen = _rank(cands, s_det, k)
            if config.slot_order == "offset":
                chosen = sorted(chosen, key=lambda j: tuple(points[j][a] - centre[a] for a in range(d)))
            s = scores(centre, chosen, z).to(x.dtype)  # recomputed with grad: rho's input
            rho = _rho(s, config)
            outputs.append(_aggregate(values[chosen], rho, dense, bias, c_out))

    y = torch.stack(outputs).reshape(batch, math.prod(out_size), c_out)
    return y.transpose(1, 2).reshape(batch, c_out, *out_size)


# --------------------------------------------------------------------------- sequence form


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    config: ConvNNConfig,
    *,
    allowed: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ConvNN in sequence form (feature basis): every query row picks k keys (small inputs only).

    Args:
        q: ``(B, Nq, D)`` queries; k: ``(B, Nk, D)`` keys; v: ``(B, Nk, Dv)`` values.
        config: the semantics; ``basis`` must be 'feature', ``candidates`` 'all' or 'random'.
        allowed: bool, broadcastable to ``(B, Nq, Nk)``; True = key j may be a neighbour of
            query i. A query with fewer than ``config.k`` allowed candidates leaves its last
            slots empty (weight zero; softmax over the non-empty slots); with none it outputs
            the bias (zeros without one).
        weight: ``(C_out, Dv / groups, k)`` for 'full'/'grouped'; None for 'sum'.
        bias: ``(C_out,)`` or None.
        generator: required for ``candidates='random'`` (``randperm(Nk)`` on the CPU, one draw
            shared by every query and sample).

    Returns:
        ``(B, Nq, C_out)``, ``C_out = Dv`` for ``kernel='sum'``.
    """
    if config.basis != "feature":
        raise NotImplementedError(f"naive_attention supports basis='feature' only, got {config.basis!r}")
    if config.candidates not in ("all", "random"):
        raise NotImplementedError(
            f"naive_attention supports candidates 'all'/'random', got {config.candidates!r}"
        )
    if config.coord_encoding != "none":
        raise NotImplementedError("naive_attention has no coordinates: coord_encoding must be 'none'")
    if per_axis(config.stride, 1, "stride") != (1,):
        raise NotImplementedError(
            f"naive_attention takes every query row: stride must be 1, got {config.stride!r}"
        )
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q, k, v must have shapes (B, Nq, D), (B, Nk, D), (B, Nk, Dv)")
    batch, nq, dq = q.shape
    nk = k.shape[1]
    if k.shape[0] != batch or k.shape[2] != dq or v.shape[0] != batch or v.shape[1] != nk:
        raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not agree")
    forced = config.self_slot == "forced"
    if forced and nq != nk:
        raise ValueError(f"self_slot='forced' needs Nq == Nk (self = same index), got Nq={nq}, Nk={nk}")
    mask = torch.ones(batch, nq, nk, dtype=torch.bool) if allowed is None else allowed.to(torch.bool)
    mask = mask.cpu().expand(batch, nq, nk)

    dense = _dense_weight(weight, config, v.shape[2])
    c_out = v.shape[2] if dense is None else dense.shape[0]
    _check_bias(bias, c_out)

    if config.candidates == "all":
        base = list(range(nk))
    else:
        if generator is None:
            raise ValueError("candidates='random' needs a torch.Generator (generator=None)")
        base = sorted(int(j) for j in torch.randperm(nk, generator=generator)[: config.num_candidates])
    k_of = {}
    for i in range(nq):
        count = len(set(base) | {i}) if forced else len(base)
        k_of[i] = count if config.k is None else config.k  # None: every candidate
        _check_k(k_of[i], count, f"query {i}")

    outputs = []
    for b in range(batch):
        for i in range(nq):
            ok = [j for j in base if bool(mask[b, i, j]) and not (forced and j == i)]
            need = k_of[i] - 1 if forced else k_of[i]
            s_det = _similarity(q[b, i].detach(), k[b, ok].detach(), config).tolist() if ok else []
            chosen = ([i] if forced else []) + _rank(ok, s_det, need)
            if not chosen:
                y = q.new_zeros(c_out) if bias is None else bias.clone()
                outputs.append(y)
                continue
            s = _similarity(q[b, i], k[b, chosen], config)
            outputs.append(_aggregate(v[b, chosen], _rho(s, config), dense, bias, c_out))
    return torch.stack(outputs).reshape(batch, nq, c_out)


# --------------------------------------------------------------------------- window form


def _window_on_axis(x: int, length: int, kernel: int, stride: int, dilation: int, causal: bool) -> list[int]:
    """The key coordinates the query at ``x`` sees on one axis (``candidates='window'``): the
    members of its dilation group (``x % dilation``) listed in order, the leader of its stride
    group, then the K-window around the leader pushed back inside the group (or, causal, the
    leader's K-window cut at the query)."""
    members = [p for p in range(length) if p % dilation == x % dilation]
    g = members.index(x)
    first_of_group = (g // stride) * stride
    if causal:
        leader = min(first_of_group + stride - 1, len(members) - 1)
        return [members[j] for j in range(len(members)) if j <= g and leader - j < kernel]
    leader = min(first_of_group + stride // 2, len(members) - 1)
    before = kernel // 2  # an even window reaches one further back than forward
    start = leader - before
    start = max(0, min(start, len(members) - kernel))
    return members[start : start + kernel]


def naive_window_attention(q: Tensor, k: Tensor, v: Tensor, config: ConvNNConfig) -> Tensor:
    """``candidates='window'`` (neighbourhood attention), one query at a time (small grids only).

    Args:
        q, k: ``(B, *S, D)``; v: ``(B, *S, Dv)``; tokens channels-last on a grid of 1 to 3 axes.
        config: ``candidates='window'`` with scaled-dot scores, softmax and the sum kernel.

    Returns:
        ``(B, *S, Dv)``: each query's softmax of ``rho_scale * scale * q.k`` over the keys in its
        window on every axis, times their values. Computed in the inputs' dtype.
    """
    if config.candidates != "window":
        raise NotImplementedError(f"naive_window_attention needs candidates='window', got {config.candidates!r}")
    d = q.dim() - 2
    if d not in (1, 2, 3) or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"q, k (B, *S, D) and v (B, *S, Dv) do not agree: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    size = tuple(q.shape[1:-1])
    ksize = per_axis(config.kernel_size, d, "kernel_size")
    stride = per_axis(config.window_stride, d, "window_stride")
    dil = per_axis(config.dilation, d, "dilation")
    causal = causal_per_axis(config.causal, d)
    for a in range(d):
        if ksize[a] * dil[a] > size[a] or stride[a] > ksize[a]:
            raise ValueError(f"axis {a}: need kernel_size*dilation <= length and window_stride <= kernel_size")
    batch = q.shape[0]
    qf, kf, vf = q.reshape(batch, -1, q.shape[-1]), k.reshape(batch, -1, k.shape[-1]), v.reshape(batch, -1, v.shape[-1])
    points = list(itertools.product(*(range(n) for n in size)))
    index_of = {p: n for n, p in enumerate(points)}
    outputs = []
    for b in range(batch):
        for p in points:
            per_axis_keys = [_window_on_axis(p[a], size[a], ksize[a], stride[a], dil[a], causal[a]) for a in range(d)]
            keys = sorted(index_of[c] for c in itertools.product(*per_axis_keys))
            s = _similarity(qf[b, index_of[p]], kf[b, keys], config)
            outputs.append(_aggregate(vf[b, keys], _rho(s, config), None, None, vf.shape[-1]))
    return torch.stack(outputs).reshape(*v.shape)
