"""Grids, coordinates, padding, strides and dilation: where tokens and queries sit.

Everything here is data-independent: it depends on the spatial shape, the configuration,
the device and the dtype, never on feature values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convnn_ref.config import ConvNNConfig, padding_per_axis, per_axis


@dataclass(frozen=True)
class Geometry:
    """The resolved layout of one ConvNN call on a ``(B, C, *spatial)`` input.

    ``padded`` is the candidate grid's shape (``spatial`` plus padding), ``out`` the query
    grid's shape. ``kernel`` is 1 on every axis when the config has no ``kernel_size``.
    """

    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    padded: tuple[int, ...]
    out: tuple[int, ...]
    position_basis: bool

    @property
    def ndim(self) -> int:
        return len(self.spatial)


def resolve_geometry(config: ConvNNConfig, spatial: tuple[int, ...]) -> Geometry:
    """Per-axis kernel, stride, dilation, padding and the query grid for ``spatial``.

    Raises ``ValueError`` naming the axis when the (dilated) window does not fit the padded
    input, as ``nn.ConvNd`` does.
    """
    d = len(spatial)
    kernel = per_axis(config.kernel_size, d, "kernel_size")
    stride = per_axis(config.stride, d, "stride")
    dilation = per_axis(config.dilation, d, "dilation")
    padding = padding_per_axis(config.padding, d)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, padding))
    position_basis = config.basis == "position"
    out = []
    for axis in range(d):
        if position_basis:
            span = dilation[axis] * (kernel[axis] - 1) + 1
            if span > padded[axis]:
                raise ValueError(
                    f"kernel_size={kernel} with dilation={dilation} spans {span} points on axis {axis}, "
                    f"more than the padded input's {padded[axis]} (spatial={spatial}, padding={padding})"
                )
            out.append((padded[axis] - span) // stride[axis] + 1)
        else:
            out.append((spatial[axis] - 1) // stride[axis] + 1)
    return Geometry(tuple(spatial), kernel, stride, dilation, padding, padded, tuple(out), position_basis)


def grid_indices(shape: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """Integer index of every point of a grid, row-major. Returns ``(prod(shape), d)`` int64."""
    axes = [torch.arange(n, device=device) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def candidate_positions(geometry: Geometry, device: torch.device | None = None) -> torch.Tensor:
    """Integer positions of the candidate grid's points (padded grid when padding), in units of
    the unpadded grid (the first padded point is at ``-lo``). Returns ``(M, d)`` int64."""
    lo = torch.tensor([p[0] for p in geometry.padding], device=device)
    return grid_indices(geometry.padded, device) - lo


def query_origins(geometry: Geometry, device: torch.device | None = None) -> torch.Tensor:
    """Integer position of each query's first window point (position basis: ``o*stride - lo``,
    in units of the unpadded grid) or of its token (feature and hybrid bases: ``o*stride``).
    Returns ``(Nq, d)`` int64."""
    stride = torch.tensor(geometry.stride, device=device)
    origins = grid_indices(geometry.out, device) * stride
    if not geometry.position_basis:
        return origins
    lo = torch.tensor([p[0] for p in geometry.padding], device=device)
    return origins - lo


def query_centres(geometry: Geometry, device: torch.device | None = None) -> torch.Tensor:
    """Each query's position as float64 ``(Nq, d)``: the window's centre in the position basis
    (``origin + dilation*(K-1)/2``, half-integer for even K), the token's position otherwise."""
    origins = query_origins(geometry, device).to(torch.float64)
    if not geometry.position_basis:
        return origins
    half = torch.tensor(
        [dl * (k - 1) / 2 for dl, k in zip(geometry.dilation, geometry.kernel)], dtype=torch.float64, device=device
    )
    return origins + half


def query_tokens(geometry: Geometry, device: torch.device | None = None) -> torch.Tensor:
    """Row-major index ``(Nq,)`` in the padded grid of the token at each query's position (its
    own token, for forced self). Raises when a query sits between tokens (even kernels)."""
    centres = query_centres(geometry, device)
    if bool((centres != centres.round()).any()):
        raise ValueError("self_slot='forced' needs queries on tokens: an even kernel_size puts them between tokens")
    lo = torch.tensor([p[0] for p in geometry.padding], device=device)
    return flat_index(centres.round().to(torch.int64) + lo, geometry.padded)


def axis_unit(geometry: Geometry, config: ConvNNConfig, device: torch.device | None = None) -> torch.Tensor:
    """How many integer grid steps make one unit of the position score on each axis ``(d,)``
    float64: ``dilation*K/2`` with kernel scaling (distances in half-windows, whatever the
    coordinates), ``(L-1)/2`` for normalized coordinates (L the padded length; 1 when L = 1, where
    every difference is 0), 1 for integer ones. Scores divide each exact (half-)integer difference
    by it: a correctly rounded quotient of exact values, so mathematically equal distances give
    bit-identical scores (multiplying by a rounded reciprocal would not)."""
    if config.kernel_size is not None and config.kernel_scaled:
        units = [dl * kk / 2 for dl, kk in zip(geometry.dilation, geometry.kernel)]
    elif config.coordinates == "normalized":
        units = [(n - 1) / 2 if n > 1 else 1.0 for n in geometry.padded]
    else:
        units = [1.0] * geometry.ndim
    return torch.tensor(units, dtype=torch.float64, device=device)


def coordinate_steps(geometry: Geometry, coordinates: str) -> tuple[float, ...]:
    """Length of one grid step on each axis in the chosen coordinates: 1 for integer
    coordinates, ``2/(L-1)`` for ``normalized`` ones (L the padded length; 0 when L = 1)."""
    if coordinates == "integer":
        return (1.0,) * geometry.ndim
    return tuple(2.0 / (n - 1) if n > 1 else 0.0 for n in geometry.padded)


def grid_coordinates(geometry: Geometry, coordinates: str, device: torch.device | None = None) -> torch.Tensor:
    """Coordinates ``(N_padded, d)`` float64 of every point of the padded grid, row-major, as the
    hybrid basis embeds them: ``integer``, the point's index on each axis of the padded grid;
    ``normalized``, each padded axis mapped affinely onto ``[-1, 1]`` (0 on a length-1 axis)."""
    index = grid_indices(geometry.padded, device).to(torch.float64)
    if coordinates == "integer":
        return index
    steps = torch.tensor(coordinate_steps(geometry, coordinates), dtype=torch.float64, device=device)
    origin = torch.tensor([-1.0 if n > 1 else 0.0 for n in geometry.padded], dtype=torch.float64, device=device)
    return origin + index * steps


def coordinate_channels(spatial: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """CoordConv-like channels: ``linspace(-1, 1)`` over each axis (0 on a length-1 axis).
    Returns ``(d, *spatial)``."""
    # (2i - (n-1)) / (n-1): exact at the ends and at the centre, antisymmetric (torch.linspace is
    # off by an ulp at the centre, where a zero token's cosine score would then depend on it).
    axes = [
        (2 * torch.arange(n, device=device, dtype=torch.float64) - (n - 1)) / (n - 1)
        if n > 1
        else torch.zeros(1, device=device, dtype=torch.float64)
        for n in spatial
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=0).to(dtype)


def grid_subset(
    spatial: tuple[int, ...], per_axis_count: int, margin: int, rounding: str = "round", device: torch.device | None = None
) -> torch.Tensor:
    """Row-major token indices of a regular subgrid: on each axis the points of
    ``linspace(margin, L-1-margin, per_axis_count)``, deduplicated: ``rounding='round'`` in
    float64 and ``torch.round``; ``'truncate'`` in float32 and truncated toward zero (the
    research code's ``linspace(...).long()``). Returns ``(M,)`` int64."""
    axis_points = []
    for n in spatial:
        lo, hi = margin, n - 1 - margin
        if hi < lo:
            raise ValueError(f"grid_margin={margin} leaves no point on an axis of length {n}")
        if rounding == "truncate":
            pts = torch.linspace(lo, hi, per_axis_count, dtype=torch.float32).long()
        else:
            pts = torch.linspace(lo, hi, per_axis_count, dtype=torch.float64).round().to(torch.int64)
        axis_points.append(pts.unique().to(device))
    mesh = torch.meshgrid(*axis_points, indexing="ij")
    index = torch.zeros_like(mesh[0])
    for axis, m in enumerate(mesh):
        index = index * spatial[axis] + m
    return index.reshape(-1)


def flat_index(points: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Row-major index ``(P,)`` of integer points ``(P, d)`` in a grid of shape ``shape``."""
    index = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    for axis, n in enumerate(shape):
        index = index * n + points[:, axis]
    return index


def zero_pad(x: torch.Tensor, padding: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """x ``(B, C, *S)`` extended by ``(lo, hi)`` zero points on each spatial axis."""
    if not any(lo or hi for lo, hi in padding):
        return x
    pad: list[int] = []
    for lo, hi in reversed(padding):
        pad += [lo, hi]
    return torch.nn.functional.pad(x, pad)
