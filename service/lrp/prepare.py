"""The engine's entry points on an nn.Module: `prepare` (captured once, cached while the model is unchanged) and
`explain`."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from service.lrp.checks import Extra
from service.lrp.composites import CompositeSpec
from service.lrp.engine import PreparedModel
from service.lrp.exceptions import ExplanationInputError
from service.lrp.explanation import Explanation
from service.lrp.targets import Target

_prepared: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], PreparedModel]] = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


_SIMPLE = (bool, int, float, str, type(None))


def _settings(module: nn.Module) -> tuple[Any, ...]:
    """A module's class, mode, forward and plain attributes (eps, inplace, dim, ...)."""
    plain = tuple(sorted((k, v) for k, v in vars(module).items() if isinstance(v, _SIMPLE)
                         or (isinstance(v, tuple) and all(isinstance(i, _SIMPLE) for i in v))))
    forward = vars(module).get("forward")
    return type(module), module.training, id(forward) if forward is not None else None, plain


def _fingerprint(model: nn.Module, example: torch.Tensor, extra: Extra) -> tuple[Any, ...]:
    """What the capture depends on: every tensor's identity and version (weights replaced or updated in place), every
    module's class and settings (an activation swapped, a BatchNorm's eps changed, train/eval), and the kind of input
    (floating inputs are captured at their sample shape; token ids at any length) with the extra inputs' names."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    weights = tuple((name, t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for name, t in tensors)
    modules = tuple((path, _settings(m)) for path, m in model.named_modules())
    kind = (example.dtype, tuple(example.shape[1:]) if example.is_floating_point() else example.dim(),
            tuple(sorted((name, value.dtype, value.dim()) for name, value in (extra or {}).items())))
    return weights, modules, kind


def prepare(model: nn.Module | PreparedModel, example: torch.Tensor, extra: Extra = None) -> PreparedModel:
    """The PreparedModel of `model`, captured at `example` and the extra inputs (keyword arguments of its forward that
    carry no relevance, such as an attention mask), cached while the model and the kind of input are unchanged
    (in-place weight updates included; changes made through `.data` bypass the version counter: call
    `PreparedModel.from_module` then)."""
    if isinstance(model, PreparedModel):
        return model
    if not isinstance(model, nn.Module):
        raise ExplanationInputError(f"model must be a torch.nn.Module or a PreparedModel, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise ExplanationInputError(f"x must be a torch.Tensor, got {type(example).__name__}")
    fingerprint = _fingerprint(model, example, extra)
    with _prepared_lock:
        cached = _prepared.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    prepared = PreparedModel.from_module(model, example, extra)
    with _prepared_lock:
        _prepared[model] = (fingerprint, prepared)
    return prepared


def explain(model: nn.Module | PreparedModel, x: torch.Tensor, target: Target = None,
            composite: CompositeSpec = "epsilon_plus_flat", layers: Iterable[str] = (),
            extra: Extra = None, **params: object) -> Explanation:
    """LRP of `model` at x: `.relevance` shaped like x, `.output` the model's output.

    target: an int, per sample an int or a list of ints (explained together), or None (the argmax); composite: a
    name from `service.lrp.COMPOSITE_NAMES` or a rule map; params: epsilon, stabilizer, gamma, alpha, beta, low, high;
    layers: names whose output relevance is returned in `.layers`; extra: other arguments of the forward by name
    (`{"attention_mask": mask}`), which carry no relevance. The model is never modified.
    """
    prepared = prepare(model, x, extra)
    return prepared.explain_resolved(x, target, prepared.resolve(composite, **params), layers, extra=extra)
