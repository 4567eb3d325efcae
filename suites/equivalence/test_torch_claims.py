"""What the documentation says about PyTorch, checked on the installed torch: if a future torch
changes it, these turn red and the documentation (docs/semantics.md, the docstring of
`convnn_ref.scaled_dot_product_attention`) must change with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import convnn_ref as cr

F64 = torch.float64


def _masked_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 5, generator=gen, dtype=F64) for _ in range(3))
    allowed = torch.ones(4, 4, dtype=torch.bool)
    allowed[1] = False  # query row 1 may attend to nothing
    return q, k, v, allowed


@pytest.mark.parametrize("backend", ["default", "math"])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_sdpa_fully_masked_row_is_zero(backend: str, mask_kind: str) -> None:
    """docs/semantics.md: F.scaled_dot_product_attention returns 0 on a fully masked query row
    (older torch versions gave NaN on the math path); ConvNN's twin returns 0 there too."""
    q, k, v, allowed = _masked_inputs()
    mask = allowed if mask_kind == "bool" else torch.zeros(4, 4, dtype=F64).masked_fill(~allowed, float("-inf"))
    if backend == "math":
        with sdpa_kernel(SDPBackend.MATH):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert bool((y[..., 1, :] == 0).all()), f"torch {torch.__version__}: a fully masked row is {y[..., 1, :]}, not 0"
    ours = cr.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert bool((ours[..., 1, :] == 0).all())
    assert torch.allclose(ours, y, atol=1e-12)


def test_the_docstring_says_what_torch_does() -> None:
    """The claim tested above is the one the docstring makes."""
    doc = " ".join((cr.scaled_dot_product_attention.__doc__ or "").split())
    assert "A fully masked query row returns 0, as SDPA does" in doc
