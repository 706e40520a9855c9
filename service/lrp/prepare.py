"""The engine's entry points on an nn.Module: `prepare` (traced once, cached while the weights are unchanged) and
`explain`."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from service.lrp.engine import PreparedModel, Target
from service.lrp.errors import ExplanationInputError
from service.lrp.explanation import Explanation

_prepared: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], PreparedModel]] = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Identity and version of every tensor: changes when weights are replaced or updated in place."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return tuple((name, t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for name, t in tensors)


def prepare(model: nn.Module | PreparedModel) -> PreparedModel:
    """The PreparedModel of `model`, cached while its parameters are unchanged (in-place updates included;
    changes made through `.data` bypass the version counter: call `PreparedModel.from_module` then)."""
    if isinstance(model, PreparedModel):
        return model
    if not isinstance(model, nn.Module):
        raise ExplanationInputError(f"model must be a torch.nn.Module or a PreparedModel, got {type(model).__name__}")
    fingerprint = _fingerprint(model)
    with _prepared_lock:
        cached = _prepared.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    prepared = PreparedModel.from_module(model)
    with _prepared_lock:
        _prepared[model] = (fingerprint, prepared)
    return prepared


def explain(model: nn.Module | PreparedModel, x: torch.Tensor, target: Target = None,
            composite: str | Mapping[str, Any] = "epsilon_plus_flat", layers: Iterable[str] = (),
            **params: Any) -> Explanation:
    """LRP of `model` at x: `.relevance` shaped like x, `.output` the model's output.

    target: an int, one int per sample, or None (the argmax); composite: a name from
    `service.lrp.COMPOSITE_NAMES` or a rule map; params: epsilon, stabilizer, gamma, alpha, beta, low, high;
    layers: names whose output relevance is returned in `.layers`. The model is never modified.
    """
    return prepare(model).explain(x, target, composite, layers, **params)
