"""The transformer architectures of the shipped models (models/train.py trains them; the service never imports this:
a model folder holds the captured graph, not code).

TextClassifier: token and learned position embeddings, pre-norm blocks (multi-head self-attention under the padding
mask, a GELU MLP), a final LayerNorm and the first ([CLS]) token's vector to the classes.
DigitsViT: the same blocks over 2x2 patches of an 8x8 image, with a class token and learned positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """h + attention(LayerNorm(h)), then h + MLP(LayerNorm(h)); attention sees only the keys where `keep` is True."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, h: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, width = h.shape
        qkv = self.qkv(self.norm1(h)).view(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        h = h + self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))
        return h + self.mlp(self.norm2(h))


class TextClassifier(nn.Module):
    """Token ids [batch, tokens] and a 0/1 attention mask -> class logits, read at the first token."""

    def __init__(self, vocabulary: int, classes: int, max_tokens: int, width: int = 64, heads: int = 4,
                 blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.positions = nn.Parameter(torch.randn(1, max_tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids) + self.positions[:, : input_ids.shape[1]]
        keep = attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            h = block(h, keep)
        return self.head(self.norm(h)[:, 0])


class DigitsViT(nn.Module):
    """An image [batch, 1, 8, 8] -> class logits: 2x2 patches embedded by a convolution, a class token, learned
    positions, transformer blocks, the class token's vector to the classes."""

    def __init__(self, classes: int = 10, width: int = 48, heads: int = 4, blocks: int = 2, patch: int = 2) -> None:
        super().__init__()
        self.patches = nn.Conv2d(1, width, patch, stride=patch)
        count = (8 // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, count + 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patches(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), patches], dim=1) + self.positions
        for block in self.blocks:
            h = block(h, None)
        return self.head(self.norm(h)[:, 0])
