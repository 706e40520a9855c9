"""Small transformers (BERT-, ViT- and Llama-like), each written once against an op namespace: `TorchOps` is what the
model runs and what our capture sees; `LxtOps` runs the same computation through lxt 2.1's explicit rule Functions
(the AttnLRP authors' code), whose input gradient is the reference relevance. Wherever the AttnLRP table says
"identity" or "follows the data" for an element-wise map (GELU, SiLU, tanh, scaling, negation), lxt's `identity`
rule wraps it."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-12


def target_seed(logits: torch.Tensor, target: int = 1) -> torch.Tensor:
    """The output relevance one-hot(target) * logit."""
    seed = torch.zeros_like(logits)
    seed[:, target] = logits[:, target]
    return seed


def assert_relevance_close(ours: torch.Tensor, reference: torch.Tensor | None, rtol: float = 1e-6) -> None:
    """Equal to `rtol` of the largest relevance (element-wise relative error is meaningless near zero)."""
    assert reference is not None and reference.abs().max() > 0
    torch.testing.assert_close(ours, reference, rtol=0, atol=rtol * float(reference.abs().max()))


class TorchOps:
    """Plain PyTorch: the model as a user writes it."""

    @staticmethod
    def linear(x: torch.Tensor, layer: Any) -> torch.Tensor:
        return F.linear(x, layer.weight, layer.bias)

    @staticmethod
    def conv(x: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
        return layer(x)

    @staticmethod
    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    @staticmethod
    def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    @staticmethod
    def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    @staticmethod
    def softmax(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)

    @staticmethod
    def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(x)

    @staticmethod
    def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    @staticmethod
    def scale(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x * factor

    neg = staticmethod(torch.neg)
    relu = staticmethod(F.relu)
    gelu = staticmethod(F.gelu)
    silu = staticmethod(F.silu)
    tanh = staticmethod(torch.tanh)

    @staticmethod
    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


class LxtOps:
    """The same computation through lxt's rules (imported when first used: lxt is a test-only dependency)."""

    @staticmethod
    def _lxt() -> Any:
        import lxt.explicit.functional as lf
        import lxt.explicit.rules as rules

        return lf, rules

    @classmethod
    def linear(cls, x: torch.Tensor, layer: Any) -> torch.Tensor:
        return cls._lxt()[0].linear_epsilon(x, layer.weight, layer.bias, EPS)

    @classmethod
    def conv(cls, x: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
        return cls._lxt()[1].epsilon_lrp(layer, EPS, x)

    @classmethod
    def add(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cls._lxt()[0].add2(a, b, epsilon=EPS)

    @classmethod
    def mul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cls._lxt()[0].mul2(a, b)

    @classmethod
    def matmul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cls._lxt()[0].matmul(a, b, epsilon=EPS)

    @classmethod
    def softmax(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._lxt()[0].softmax(x, -1)

    @classmethod
    def layer_norm(cls, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        # lxt's layer_norm wrapper fixes its stabiliser at 1e-6; its Function takes ours
        return cls._lxt()[0].layer_norm_grad_fn.apply(x, norm.weight, norm.bias, norm.eps, EPS)

    @classmethod
    def rms_norm(cls, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return cls._lxt()[0].rms_norm_identity(x, weight, eps)

    @classmethod
    def _identity(cls, fn: Any, x: torch.Tensor) -> torch.Tensor:
        return cls._lxt()[1].identity(fn, x)

    @classmethod
    def scale(cls, x: torch.Tensor, factor: float) -> torch.Tensor:
        return cls._identity(lambda t: t * factor, x)

    @classmethod
    def neg(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._identity(torch.neg, x)

    @classmethod
    def relu(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._identity(F.relu, x)

    @classmethod
    def gelu(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._identity(F.gelu, x)

    @classmethod
    def silu(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._identity(F.silu, x)

    @classmethod
    def tanh(cls, x: torch.Tensor) -> torch.Tensor:
        return cls._identity(torch.tanh, x)

    @classmethod
    def attention(cls, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        scores = cls.scale(cls.matmul(q, k.transpose(-1, -2)), 1 / math.sqrt(q.shape[-1]))
        if causal:
            tokens = q.shape[-2]
            keep = torch.ones(tokens, tokens, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        return cls.matmul(cls.softmax(scores), v)


class Attention(nn.Module):
    """Multi-head self-attention by hand: projections, heads by view/permute, q @ k^T * scale, an additive mask,
    softmax, @ v; or (`sdpa`) F.scaled_dot_product_attention. `kv_heads` < heads: grouped-query attention."""

    def __init__(self, width: int, heads: int, kv_heads: int | None = None, sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.sdpa = heads, kv_heads or heads, sdpa
        self.size = width // heads
        self.q = nn.Linear(width, width)
        self.k, self.v = (nn.Linear(width, self.size * self.kv_heads) for _ in range(2))
        self.o = nn.Linear(width, width)
        self.ops: Any = TorchOps

    def split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), heads, self.size).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor | None = None, rotary: Any = None,
                causal: bool = False) -> torch.Tensor:
        ops = self.ops
        q, k = self.split(ops.linear(x, self.q), self.heads), self.split(ops.linear(x, self.k), self.kv_heads)
        v = self.split(ops.linear(x, self.v), self.kv_heads)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if self.kv_heads != self.heads:
            k, v = (t.repeat_interleave(self.heads // self.kv_heads, dim=1) for t in (k, v))
        if self.sdpa:
            context = ops.attention(q, k, v, causal)
        else:
            scores = ops.scale(ops.matmul(q, k.transpose(-1, -2)), 1 / math.sqrt(self.size))
            if additive_mask is not None:
                scores = ops.add(scores, additive_mask)
            if causal:
                tokens = x.size(1)
                scores = scores.masked_fill(~self.causal_mask[:tokens, :tokens], float("-inf"))
            context = ops.matmul(ops.softmax(scores), v)
        context = context.permute(0, 2, 1, 3).reshape(x.size(0), x.size(1), -1)
        return ops.linear(context, self.o)

    causal_mask: torch.Tensor


class _Ops(nn.Module):
    """A model whose ops (and its submodules' ops) can be switched between TorchOps and LxtOps."""

    ops: Any = TorchOps

    def use(self, ops: Any) -> None:
        for module in self.modules():
            module.ops = ops


class BertLike(_Ops):
    """Token ids -> word embedding + learned positions (a sliced parameter), LayerNorm, post-norm encoder blocks
    (additive attention mask from the attention_mask argument, GELU MLP), tanh pooler on the first token, classes."""

    def __init__(self, vocab: int = 30, width: int = 16, heads: int = 4, layers: int = 2, classes: int = 3,
                 positions: int = 12) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(1, positions, width) * 0.5)
        self.norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_PostNormBlock(width, heads) for _ in range(layers))
        self.pool, self.classify = nn.Linear(width, width), nn.Linear(width, classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word(ids)

    def body(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        ops = self.ops
        x = ops.layer_norm(ops.add(x, self.position[:, :x.size(1)]), self.norm)
        additive = None
        if attention_mask is not None:
            additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for block in self.blocks:
            x = block(x, additive)
        return ops.linear(ops.tanh(ops.linear(x[:, 0], self.pool)), self.classify)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.embed(ids), attention_mask)


class _PostNormBlock(_Ops):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention = Attention(width, heads)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor, additive: torch.Tensor | None) -> torch.Tensor:
        ops = self.ops
        x = ops.layer_norm(ops.add(x, self.attention(x, additive)), self.norm1)
        return ops.layer_norm(ops.add(x, ops.linear(ops.gelu(ops.linear(x, self.up)), self.down)), self.norm2)


class ViTLike(_Ops):
    """Images -> patch-embedding convolution, class token (concatenated), learned position embedding (added),
    pre-norm blocks with F.scaled_dot_product_attention, final LayerNorm, head on the class token."""

    def __init__(self, size: int = 8, patch: int = 4, channels: int = 3, width: int = 16, heads: int = 2,
                 layers: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.patches = nn.Conv2d(channels, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, width) * 0.5)
        self.blocks = nn.ModuleList(_PreNormBlock(width, heads, nn.LayerNorm) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        x = ops.conv(x, self.patches).flatten(2).transpose(1, 2)
        x = ops.add(torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1), self.position)
        for block in self.blocks:
            x = block(x)
        return ops.linear(ops.layer_norm(x, self.norm)[:, 0], self.head)


class _RMSNorm(_Ops):
    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(1 + 0.1 * torch.randn(width)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rms_norm(x, self.weight, self.eps)


class _PreNormBlock(_Ops):
    """x + attention(norm(x)), then x + MLP(norm(x)); the MLP is GELU, or SwiGLU (silu(gate(x)) * up(x))."""

    def __init__(self, width: int, heads: int, norm: Any, kv_heads: int | None = None, swiglu: bool = False,
                 sdpa: bool = True) -> None:
        super().__init__()
        self.attention = Attention(width, heads, kv_heads, sdpa)
        self.norm1, self.norm2 = norm(width), norm(width)
        self.swiglu = swiglu
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        self.gate = nn.Linear(width, 2 * width) if swiglu else None

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        if self.gate is not None:
            return ops.linear(ops.mul(ops.silu(ops.linear(x, self.gate)), ops.linear(x, self.up)), self.down)
        return ops.linear(ops.gelu(ops.linear(x, self.up)), self.down)

    def forward(self, x: torch.Tensor, rotary: Any = None, causal: bool = False) -> torch.Tensor:
        ops = self.ops
        norm1 = self.norm1(x) if isinstance(self.norm1, _RMSNorm) else ops.layer_norm(x, self.norm1)
        x = ops.add(x, self.attention(norm1, rotary=rotary, causal=causal))
        norm2 = self.norm2(x) if isinstance(self.norm2, _RMSNorm) else ops.layer_norm(x, self.norm2)
        return ops.add(x, self.mlp(norm2))


class _Rotary(_Ops):
    """Rotary position embedding: q * cos + rotate_half(q) * sin, the tables computed from torch.arange positions."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("inverse", 1.0 / (10000 ** (torch.arange(0, size, 2).float() / size)), persistent=False)

    inverse: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        positions = torch.arange(x.size(2), device=x.device, dtype=self.inverse.dtype)
        angles = torch.outer(positions, self.inverse)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        half = x.size(-1) // 2
        rotated = torch.cat([ops.neg(x[..., half:]), x[..., :half]], dim=-1)
        return ops.add(ops.mul(x, cos), ops.mul(rotated, sin))


class LlamaLike(_Ops):
    """Token ids -> embedding, pre-norm blocks (hand-written RMSNorm, rotary embeddings, grouped-query causal
    attention by a sliced buffer and masked_fill or by SDPA's is_causal, SwiGLU MLP), final RMSNorm, a language-model
    head over the vocabulary; [batch, tokens, vocab] out, explained at the last token."""

    def __init__(self, vocab: int = 30, width: int = 16, heads: int = 4, kv_heads: int = 2, layers: int = 2,
                 positions: int = 12, sdpa: bool = False) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            _PreNormBlock(width, heads, _RMSNorm, kv_heads, swiglu=True, sdpa=sdpa) for _ in range(layers))
        for block in self.blocks:
            block.attention.register_buffer(
                "causal_mask", torch.ones(positions, positions, dtype=torch.bool).tril(), persistent=False)
        self.rotary = _Rotary(width // heads)
        self.norm, self.head = _RMSNorm(width), nn.Linear(width, vocab, bias=False)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word(ids)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, rotary=self.rotary, causal=True)
        return self.ops.linear(self.norm(x), self.head)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(ids))


def multihead_attention(ops: Any, module: nn.MultiheadAttention, x: torch.Tensor,
                        padding: torch.Tensor | None = None) -> torch.Tensor:
    """nn.MultiheadAttention(x, x, x) written out (x batch-first; `padding` True where a key is ignored): the packed
    in-projection per q, k and v, q scaled, masked keys at -inf, softmax, @ v, the out-projection."""
    batch, tokens, width = x.shape
    heads = module.num_heads
    size = width // heads
    w, b = module.in_proj_weight, module.in_proj_bias
    assert b is not None
    q, k, v = (ops.linear(x, SimpleNamespace(weight=w[i * width:(i + 1) * width], bias=b[i * width:(i + 1) * width]))
               .view(batch, tokens, heads, size).transpose(1, 2) for i in range(3))
    scores = ops.matmul(ops.scale(q, size ** -0.5), k.transpose(-1, -2))
    if padding is not None:
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
    context = ops.matmul(ops.softmax(scores), v).transpose(1, 2).reshape(batch, tokens, width)
    return ops.linear(context, module.out_proj)


def encoder_layer(ops: Any, layer: nn.TransformerEncoderLayer, x: torch.Tensor,
                  padding: torch.Tensor | None = None) -> torch.Tensor:
    """nn.TransformerEncoderLayer (batch-first, eval) written out: norm_first or not, ReLU or GELU."""
    activation = ops.gelu if layer.activation_relu_or_gelu == 2 else ops.relu

    def feed_forward(t: torch.Tensor) -> torch.Tensor:
        return ops.linear(activation(ops.linear(t, layer.linear1)), layer.linear2)

    if layer.norm_first:
        x = ops.add(x, multihead_attention(ops, layer.self_attn, ops.layer_norm(x, layer.norm1), padding))
        return ops.add(x, feed_forward(ops.layer_norm(x, layer.norm2)))
    x = ops.layer_norm(ops.add(x, multihead_attention(ops, layer.self_attn, x, padding)), layer.norm1)
    return ops.layer_norm(ops.add(x, feed_forward(x)), layer.norm2)
