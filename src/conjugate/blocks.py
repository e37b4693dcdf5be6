"""The transformer block every study's model is built from: pre-LayerNorm, GPT-2 style.

One :class:`Block` is causal self-attention (a fused QKV projection, ``torch.nn.functional.
scaled_dot_product_attention``) followed by a 4× GELU MLP, each behind a LayerNorm and added to the residual
stream. The in-context regressor (:mod:`conjugate.synthetic.model`) and the character-level language model
(:mod:`conjugate.minilm.model`) stack these blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = dropout

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, w))
        return h + self.mlp(self.ln2(h))


__all__ = ["Block"]
