"""A k-nearest-neighbour convolution written the way research code usually is.

This is the worked example of docs/testing-your-implementation.md: a layer somebody else wrote,
with its own constructor arguments and names, that does not use convnn_ref. Every pixel picks
its K most similar pixels (cosine similarity, or negative squared Euclidean distance, over all
pixels of the image), the K neighbours are laid side by side in one long sequence, and a
``Conv1d(kernel_size=K, stride=K)`` mixes each group of K into one output pixel.

    layer = KNNConv2d(in_ch=16, out_ch=32, K=9)
    y = layer(x)   # x (B, 16, H, W) -> y (B, 32, H, W)

`research_style_adapter.py` beside it wraps this layer for the conformance runner.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class KNNConv2d(nn.Module):
    def __init__(self, in_ch, out_ch, K=9, similarity="cosine", bias=True):
        super().__init__()
        assert similarity in ("cosine", "euclidean"), similarity
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.K = K
        self.similarity = similarity
        self.conv1d = nn.Conv1d(in_ch, out_ch, kernel_size=K, stride=K, bias=bias)

    def similarity_matrix(self, x_flat):
        # x_flat: B, C, N  ->  B, N, N (larger = closer)
        if self.similarity == "cosine":
            x_norm = F.normalize(x_flat, p=2, dim=1)
            return torch.bmm(x_norm.transpose(1, 2), x_norm)
        sq = (x_flat**2).sum(dim=1)  # B, N
        dots = torch.bmm(x_flat.transpose(1, 2), x_flat)
        return -(sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * dots)

    def forward(self, x):
        B, C, H, W = x.shape
        N = H * W
        x_flat = x.reshape(B, C, N)

        sim = self.similarity_matrix(x_flat)
        _, idx = torch.topk(sim, self.K, dim=-1)  # B, N, K  (most similar first)

        # gather the K neighbours of every pixel into one sequence of length N*K
        idx = idx.reshape(B, 1, N * self.K).expand(B, C, N * self.K)
        x_prime = torch.gather(x_flat, 2, idx)  # B, C, N*K

        out = self.conv1d(x_prime)  # B, out_ch, N
        return out.reshape(B, self.out_ch, H, W)
