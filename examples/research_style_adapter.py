"""Adapter: `KNNConv2d` (research_style_convnn.py) as an implementation under test.

    python -m suites.conformance --impl examples.research_style_adapter:ResearchKNNConv
"""

import torch

from examples.research_style_convnn import KNNConv2d
from suites.implementations import Capabilities, Implementation


class ResearchKNNConv(Implementation):
    name = "research-knnconv2d"
    # What KNNConv2d computes, in ConvNNConfig's terms; every other case is skipped with a reason.
    capabilities = Capabilities(
        forms=("image",), spatial_dims=(2,), bases=("feature",), similarities=("cosine", "euclidean"),
        candidates=("all",), self_slots=("candidate",), slot_orders=("rank",), rhos=("ones",),
        kernels=("full",), coord_encodings=("none",), stride=False, padding=False, dilation=False,
    )

    def convnn(self, x, weight, bias, config, *, generator=None):
        c_out, c_in, k = weight.shape  # the reference's layout is exactly nn.Conv1d's weight
        layer = KNNConv2d(c_in, c_out, K=k, similarity=config.similarity, bias=bias is not None)
        params = {"conv1d.weight": weight} | ({} if bias is None else {"conv1d.bias": bias})
        # functional_call runs the layer with *these* tensors, so gradients reach them
        return torch.func.functional_call(layer.to(x.device, x.dtype), params, (x,))
