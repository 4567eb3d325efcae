"""convnn-ref: the reference ConvNN (Convolutional Nearest Neighbors).

Score every candidate, select the k best, aggregate them (`ConvNNConfig` holds every knob and,
in its docstring, the semantics). Position scores recover convolution exactly (`from_conv`),
scaled dot products recover attention (`from_multihead_attention`,
`scaled_dot_product_attention`) and, with k < N, KVT attention (`kvt_config`); the window
candidate rule recovers neighbourhood attention (`neighborhood_attention`, NATTEN's ``na*d``).

The conventions at the edges and the routes of the implementation: docs/semantics.md; the
module layout and its rules: DESIGN.md; what test suites may use: `convnn_ref.testing`.
"""

from convnn_ref.aggregate import aggregate_as_conv1d, apply_kernel, gather_neighbours, rho_weights
from convnn_ref.config import ConvNNConfig
from convnn_ref.functional import attention_neighbours, convnn, convnn_attention, neighbours, position_table
from convnn_ref.kvt import KVTAttention, kvt_attention, kvt_config
from convnn_ref.layers import (
    BranchingConvNN,
    ConvNN1d,
    ConvNN2d,
    ConvNN3d,
    ConvNNAttention,
    CoordinateEncoding,
    PixelShuffleConvNN2d,
    convnn_layer,
)
from convnn_ref.neighborhood import NeighborhoodAttention, neighborhood_attention, neighborhood_config, window_attention
from convnn_ref.recover import conv_config, from_conv, from_multihead_attention, scaled_dot_product_attention
from convnn_ref.select import Neighbours

__all__ = [
    "BranchingConvNN",
    "ConvNN1d",
    "ConvNN2d",
    "ConvNN3d",
    "ConvNNAttention",
    "ConvNNConfig",
    "CoordinateEncoding",
    "KVTAttention",
    "NeighborhoodAttention",
    "Neighbours",
    "PixelShuffleConvNN2d",
    "aggregate_as_conv1d",
    "apply_kernel",
    "attention_neighbours",
    "conv_config",
    "convnn",
    "convnn_attention",
    "convnn_layer",
    "from_conv",
    "from_multihead_attention",
    "gather_neighbours",
    "kvt_attention",
    "kvt_config",
    "neighborhood_attention",
    "neighborhood_config",
    "neighbours",
    "position_table",
    "rho_weights",
    "scaled_dot_product_attention",
    "window_attention",
]
__version__ = "0.1.0"
