"""The fused CPU kernel as an implementation under test (`suites.implementations`):

    python -m suites.conformance --impl fused-knn
    python -m suites.bench --preset default --impl reference --impl fused-knn

What it declares (`Capabilities`), and nothing else: the image form, feature basis, every
similarity, all candidates, no forced self, rank slots, rho ones/softmax/scores, the full and sum
kernels, no coordinate channels, no padding, stride or dilation, float32 and float64 on the CPU,
forward only, the canonical tie rule (candidates visited in index order, a later one must score
strictly higher to pass an earlier one).
"""

from __future__ import annotations

import math

import torch

from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import check_k, check_tensor, check_weight, resolve_geometry
from suites.adapters.fused_knn import kernel
from suites.implementations import LOWEST_INDEX, Capabilities, Implementation

_SIMILARITY = {"cosine": 0, "euclidean": 1, "dot": 2, "scaled_dot": 3}
_RHO = {"ones": 0, "softmax": 1, "scores": 2}
_KERNEL = {"full": 0, "sum": 1}


class FusedKNN(Implementation):
    name = "fused-knn"
    capabilities = Capabilities(
        forms=("image",),
        bases=("feature",),
        candidates=("all",),
        self_slots=("candidate",),
        slot_orders=("rank",),
        rhos=("ones", "softmax", "scores"),
        kernels=("full", "sum"),
        coord_encodings=("none",),
        dtypes=("float32", "float64"),
        devices=("cpu",),
        padding=False,
        stride=False,
        dilation=False,
        masks=False,
        backward=False,
        tie_rule=LOWEST_INDEX,
    )

    def convnn(self, x, weight, bias, config: ConvNNConfig, *, generator=None):  # type: ignore[no-untyped-def]
        x = check_tensor(x, "x", (3, 4, 5), "(B, C, *S) with 1 to 3 spatial axes")
        check_weight(weight, bias, x.shape[1], config, x)
        geometry = resolve_geometry(config, tuple(x.shape[2:]))
        b, c = x.shape[:2]
        n = math.prod(x.shape[2:])
        k = n if config.k is None else config.k
        check_k(k, n, "candidates")
        with torch.no_grad():
            values = x.detach().reshape(b, c, n).transpose(1, 2).contiguous()
            feats = values
            if config.similarity == "cosine":
                feats = (values / values.norm(dim=-1, keepdim=True).clamp_min(1e-12)).contiguous()
            scale = config.scale if config.scale is not None else 1.0 / math.sqrt(c)
            if config.kernel == "sum":
                wt = values.new_empty(0)
            else:
                wt = weight.detach().permute(2, 1, 0).contiguous()  # (k, C, C_out)
            bvec = values.new_empty(0) if bias is None else bias.detach().contiguous()
            y = kernel().fused_convnn(feats, values, wt, bvec, k, _SIMILARITY[config.similarity], float(scale),
                                      _RHO[config.rho], float(config.rho_scale), _KERNEL[config.kernel])
        return y.reshape(b, y.shape[1], *geometry.out)
