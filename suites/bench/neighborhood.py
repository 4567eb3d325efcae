"""Benchmark rows of neighbourhood attention (mode ``neighborhood``): one head, tokens of width
``C`` on a ``side x side`` grid, kernel ``kernel_size`` (``k = kernel_size**2``, the window).

Rows: a registry implementation (the reference's `cr.window_attention`, or ``--impl natten`` /
``--impl flex-na`` through their adapters), and the baselines of `suites.bench.baselines`:
``natten-na2d`` (NATTEN's ``na2d`` as a user calls it: its CPU backend, eager Flex),
``flex-na-compiled`` (``torch.compile(flex_attention)`` with the NA block mask, built once per
row outside the timing), ``sdpa-na-mask`` (SDPA with the dense ``(N, N)`` boolean window), and
full SDPA over all N keys (the ``sdpa`` rows of mode ``attention`` at the same shape).

Gold: SDPA in float64 with the dense window mask up to `DENSE_GOLD_TOKENS` tokens; above that
(a dense float64 score block of 128² tokens is 2 GiB per sample) the reference in float64,
which the equivalence suite holds to that same masked SDPA.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

import convnn_ref as cr
from convnn_ref.testing import window_geometry, window_mask
from suites.bench import cases as bench_cases
from suites.bench.cases import Case, Workload
from suites.implementations import Implementation

DENSE_GOLD_TOKENS = 4096
#: Baselines of this mode that cannot run where their library is missing.
NEEDS = {"natten-na2d": "natten"}


def config_of(case: Case) -> cr.ConvNNConfig:
    return cr.neighborhood_config(case.kernel_size or round(case.k**0.5))


def missing(case: Case) -> str | None:
    """Why a baseline row cannot run here (its library is not installed), or None."""
    module = NEEDS.get(case.implementation)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return None


def _dense_mask(case: Case, device: str | torch.device) -> torch.Tensor:
    return window_mask(window_geometry(config_of(case), (case.side, case.side)), torch.device(device))


def build(case: Case, impl: Implementation | None) -> Workload:
    config = config_of(case)
    kernel = case.kernel_size or round(case.k**0.5)
    seeds: dict[str, int] = {}
    shape = (case.B, case.side, case.side, case.C)
    q, k, v = (bench_cases._input(name, shape, case, seeds) for name in ("q", "k", "v"))
    grad_out = bench_cases._input("grad_out", shape, case, seeds)
    backward = case.direction == "forward+backward"
    inputs = {"q": q, "k": k, "v": v}
    if backward:
        for t in inputs.values():
            t.requires_grad_(True)
    name = case.implementation
    flat = (case.B, 1, case.N, case.C)
    call = _call(name, case, impl, config, kernel, flat)

    def gold() -> torch.Tensor:
        q64, k64, v64 = (t.detach().to(torch.float64) for t in (q, k, v))
        if case.N <= DENSE_GOLD_TOKENS:
            mask = _dense_mask(case, q.device)
            y = F.scaled_dot_product_attention(*(t.reshape(flat) for t in (q64, k64, v64)), attn_mask=mask)
            return y.reshape(shape)
        return cr.window_attention(q64, k64, v64, config)

    def base() -> torch.Tensor:
        with torch.no_grad():
            mask = _dense_mask(case, q.device)
            return F.scaled_dot_product_attention(*(t.reshape(flat) for t in (q, k, v)), attn_mask=mask).reshape(shape)

    run, output = bench_cases._runners(lambda: call(q, k, v), grad_out, list(inputs.values()), backward)
    return Workload(
        run, output, gold, base if case.N <= DENSE_GOLD_TOKENS else None, lambda: None,
        reduction=kernel * kernel * 2 * case.C, inputs=inputs, seeds=seeds,
        backend="flex-compiled" if name == "flex-na-compiled" else "",
    )


def _call(name: str, case: Case, impl: Implementation | None, config: cr.ConvNNConfig, kernel: int, flat: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """The timed function of row ``name``: ``(q, k, v)`` ``(B, side, side, C)`` -> same shape."""
    if name == "sdpa-na-mask":
        mask = _dense_mask(case, case.device)
        return lambda q, k, v: F.scaled_dot_product_attention(
            *(t.reshape(flat) for t in (q, k, v)), attn_mask=mask).reshape(q.shape)
    if name == "flex-na-compiled":
        from suites.adapters.flex_na import FlexNA, window_block_mask

        block_mask = window_block_mask(config, (case.side, case.side), case.device)
        attention = FlexNA(compiled=True)._attention
        return lambda q, k, v: attention(*(t.reshape(flat) for t in (q, k, v)), block_mask=block_mask).reshape(q.shape)
    if name == "natten-na2d":
        import natten

        return lambda q, k, v: natten.na2d(q[:, :, :, None], k[:, :, :, None], v[:, :, :, None], kernel_size=kernel)[:, :, :, 0]
    if impl is None:
        raise ValueError(f"no implementation named {name!r} among the baselines, and no registry implementation given")
    return lambda q, k, v: impl.window_attention(q, k, v, config)
