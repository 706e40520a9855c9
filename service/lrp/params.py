"""Validated LRP parameters: `epsilon`, `stabilizer`, `gamma`, `alpha`, `beta`, `low`, `high`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from service.lrp.exceptions import ExplanationInputError

Bound = float | tuple[float, ...]
FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # a parameter past it cannot meet a float32 tensor


@dataclass(frozen=True)
class LRPParams:
    """Parameters of all rules; `low`/`high` are a scalar or one value per input channel (dim 1)."""

    epsilon: float = 1e-6
    stabilizer: float = 1e-6
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    low: Bound | None = None
    high: Bound | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The accepted parameter names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, **given: object) -> LRPParams:
        """Validate user parameters; raise ExplanationInputError saying how to fix a bad one."""
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            raise ExplanationInputError(
                f"unknown LRP parameter(s) {unknown}; accepted parameters are {list(cls.names())}")
        numbers = {name: _non_negative(name, given[name])
                   for name in ("epsilon", "stabilizer", "gamma", "alpha", "beta") if given.get(name) is not None}
        low, high = (None if given.get(name) is None else _bound(name, given[name]) for name in ("low", "high"))
        params = cls(**numbers, low=low, high=high)
        if not math.isclose(params.alpha - params.beta, 1.0, rel_tol=0, abs_tol=1e-9):
            raise ExplanationInputError(
                f"alpha - beta must equal 1 (got alpha={params.alpha}, beta={params.beta}); "
                "for example alpha=2, beta=1 or alpha=1, beta=0")
        if params.low is not None and params.high is not None:
            lows, highs = _values(params.low), _values(params.high)
            if len(lows) != len(highs) and 1 not in (len(lows), len(highs)):
                raise ExplanationInputError("low and high must have the same number of values")
            count = max(len(lows), len(highs))
            if any(lo > hi for lo, hi in zip(lows * (count // len(lows)), highs * (count // len(highs)), strict=True)):
                raise ExplanationInputError(f"low must not exceed high (got low={params.low}, high={params.high})")
        return params


def _values(bound: Bound) -> tuple[float, ...]:
    """A bound's values: one for a scalar, one per channel otherwise."""
    return bound if isinstance(bound, tuple) else (bound,)


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExplanationInputError(f"parameter '{name}' must be a number, got {value!r}")
    number = float(value) if abs(value) <= FLOAT32_MAX else math.inf
    if not math.isfinite(number) or number < 0:
        raise ExplanationInputError(f"parameter '{name}' must be a number from 0 to {FLOAT32_MAX:.7g} (float32's "
                                    f"largest), got {value!r}")
    return number


def _bound(name: str, value: object) -> Bound:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise ExplanationInputError(f"parameter '{name}' must be a number or a non-empty list of numbers")
        return tuple(_finite(name, v) for v in value)
    return _finite(name, value)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= FLOAT32_MAX:
        raise ExplanationInputError(f"parameter '{name}' must be numbers within +-{FLOAT32_MAX:.7g} (float32's "
                                    f"range), got {value!r}")
    return float(value)
