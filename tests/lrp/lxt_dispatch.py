"""lxt 2.1's explicit rules applied to any model by torch-function dispatch: the reference relevance for Hugging Face
models, which lxt itself reaches only by patching their classes. While `LxtRules` is active, each torch function the
model calls is replaced by lxt's rule Function for it: Linear, Hugging Face's Conv1D and convolutions: epsilon;
softmax: Prop. 3.1; a product of two activations: Prop. 3.3 / uniform; sums: epsilon; LayerNorm; RMSNorm by its
detached 1/sqrt; element-wise activations, powers, negation and scaling: identity. SDPA is decomposed into those;
everything else (views, cat, indexing, masks) runs as it is, so its gradient moves relevance with the data. The
model's parameters must not require grad (they are constants to LRP); the relevance of token ids is read at the word
embedding's output (`leaves`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lxt.explicit.functional as lf
import lxt.explicit.rules as lr
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Tensor = torch.Tensor


def _grad(value: Any) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


class LxtRules(TorchFunctionMode):
    """The dispatch; `words`: the word-embedding table whose lookups become the leaves in `leaves`."""

    def __init__(self, epsilon: float, words: Tensor | None = None) -> None:
        super().__init__()
        self.eps, self.words = epsilon, words
        self.leaves: list[Tensor] = []
        identity = self._identity
        self.handlers: dict[Any, Callable[..., Any]] = {
            F.linear: lambda x, w, b=None: lf.linear_epsilon(x, w, b, self.eps),
            torch.addmm: lambda b, x, w: lr.epsilon_lrp(lambda t: torch.addmm(b, t, w), self.eps, x),
            F.conv2d: self._conv2d, F.layer_norm: self._layer_norm, F.embedding: self._embedding,
            F.scaled_dot_product_attention: self._sdpa,
            **dict.fromkeys((torch.softmax, F.softmax, Tensor.softmax), self._softmax),
            **dict.fromkeys((torch.matmul, Tensor.__matmul__), self._matmul),
            **dict.fromkeys((torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__), self._add),
            **dict.fromkeys((torch.sub, Tensor.sub, Tensor.__sub__), self._sub),
            **dict.fromkeys((torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__), self._mul),
            **dict.fromkeys((torch.div, Tensor.div, Tensor.__truediv__), self._div),
            **{fn: (lambda f: lambda x, *a, **k: identity(lambda t: f(t, *a, **k), x))(fn) for fn in (
                torch.neg, Tensor.neg, Tensor.__neg__, F.gelu, F.silu, torch.tanh, Tensor.tanh, F.relu, torch.pow,
                Tensor.pow, Tensor.__pow__)},
            **dict.fromkeys((torch.rsqrt, Tensor.rsqrt), lambda x: torch.rsqrt(x).detach()),
        }

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        handler = self.handlers.get(func)
        kwargs = kwargs or {}
        if handler is None or (not any(_grad(a) for a in (*args, *kwargs.values())) and func is not F.embedding):
            return func(*args, **kwargs)
        return handler(*args, **kwargs)

    def _identity(self, fn: Callable[[Tensor], Tensor], x: Any) -> Tensor:
        return lr.identity(fn, x) if _grad(x) else fn(x)

    def _conv2d(self, x: Tensor, w: Tensor, b: Tensor | None = None, *args: Any) -> Tensor:
        return lr.epsilon_lrp(lambda t: F.conv2d(t, w, b, *args), self.eps, x)

    def _layer_norm(self, x: Tensor, shape: Any, weight: Tensor | None = None, bias: Tensor | None = None,
                    eps: float = 1e-5) -> Tensor:
        return lf.layer_norm_grad_fn.apply(x, weight, bias, eps, self.eps)

    def _embedding(self, ids: Tensor, weight: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        out = F.embedding(ids, weight, *args, **kwargs)
        if weight is not self.words:
            return out
        leaf = out.detach().requires_grad_()
        self.leaves.append(leaf)
        return leaf

    def _softmax(self, x: Tensor, dim: int, *args: Any, dtype: Any = None, **kwargs: Any) -> Tensor:
        return lf.softmax(x, dim, dtype)

    def _matmul(self, a: Tensor, b: Tensor) -> Tensor:
        if _grad(a) and _grad(b):
            return lf.matmul(a, b, epsilon=self.eps)
        return lr.epsilon_lrp(torch.matmul, self.eps, a, b)

    def _add(self, a: Any, b: Any, alpha: float = 1) -> Tensor:
        if isinstance(a, Tensor) and isinstance(b, Tensor) and alpha == 1:
            return lf.add2(a, b, epsilon=self.eps)
        if isinstance(a, Tensor):  # x + c with a number c: epsilon, c the bias
            return lr.epsilon_lrp(lambda t: torch.add(t, b, alpha=alpha), self.eps, a)
        return lr.epsilon_lrp(lambda t: torch.add(a, t, alpha=alpha), self.eps, b)

    def _sub(self, a: Any, b: Any, alpha: float = 1) -> Tensor:
        return self._add(a, self._identity(torch.neg, b) if isinstance(b, Tensor) else -b, alpha)

    def _mul(self, a: Any, b: Any) -> Tensor:
        return lf.mul2(a, b)

    def _div(self, a: Any, b: Any, **kwargs: Any) -> Tensor:
        assert not _grad(b), "a division by an activation is not in these models"
        return self._identity(lambda t: torch.div(t, b, **kwargs), a)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
              is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Tensor:
        if enable_gqa and k.shape[-3] != q.shape[-3]:
            k, v = (t.repeat_interleave(q.shape[-3] // t.shape[-3], dim=-3) for t in (k, v))
        factor = scale if scale is not None else 1 / math.sqrt(q.shape[-1])
        scores = lr.identity(lambda t: t * factor, self._matmul(q, k.transpose(-2, -1)))
        queries, keys = q.shape[-2], k.shape[-2]
        if is_causal:
            attn_mask = torch.ones(queries, keys, dtype=torch.bool, device=q.device).tril()
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        elif attn_mask is not None:
            scores = lf.add2(scores, attn_mask, epsilon=self.eps)
        return self._matmul(lf.softmax(scores, -1), v)
