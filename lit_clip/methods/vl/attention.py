"""The attention blocks of the Annotated Transformer (harvardnlp), which both MCAN (MILVLG/mcan-vqa) and CLIP-ViL's
captioning transformer (ruotianluo/self-critical.pytorch) are built from, with their parameter names."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """Their layer norm: ``a (x - mean) / (std + eps) + b`` with the unbiased standard deviation."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.a_2, self.b_2, self.eps = nn.Parameter(torch.ones(size)), nn.Parameter(torch.zeros(size)), eps

    def forward(self, x: Tensor) -> Tensor:
        return self.a_2 * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + self.eps) + self.b_2


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``heads``, dropout on the weights; ``mask`` ``[B, queries or 1, keys]``,
    True where a query may not look (a padding key, a later word)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.linear_v, self.linear_k, self.linear_q, self.linear_merge = (nn.Linear(hidden, hidden) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, v: Tensor, k: Tensor, q: Tensor, mask: Tensor | None) -> Tensor:
        def split(x: Tensor) -> Tensor:
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        v, k, q = split(self.linear_v(v)), split(self.linear_k(k)), split(self.linear_q(q))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask[:, None], torch.finfo(scores.dtype).min)  # the originals' -1e9, fp16-safe
        attended = self.dropout(scores.softmax(dim=-1)) @ v
        return self.linear_merge(attended.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, hidden: int, ff: int, dropout: float):
        super().__init__(nn.Linear(hidden, ff), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ff, hidden))
