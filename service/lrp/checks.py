"""The checks of what a caller hands the engine: the explained input and the extra inputs, each refused with an
ExplanationInputError that says what was expected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from service.lrp import graph as ir
from service.lrp.exceptions import ExplanationInputError

Extra = Mapping[str, torch.Tensor] | None  # other arguments of the forward by name (an attention mask): no relevance
Binding = tuple[ir.Node, Callable[[Any], dict[str, Any]]]  # an extra input's node and its attrs bound to x's shape


def input_tensor(x: Any, node: ir.Node, tokens: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """x on the model's device: token ids as int64 (at most the input node's max_tokens long), else the model's
    floating dtype; a batch dimension first."""
    if not isinstance(x, torch.Tensor):
        raise ExplanationInputError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or (x.dim() < 2 and not tokens):
        raise ExplanationInputError(f"x must have a batch dimension first; got shape {tuple(x.shape)}")
    if tokens:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ExplanationInputError(f"x must hold integer token ids, got {x.dtype}")
        longest = node.typed(ir.InputAttrs).max_tokens
        if longest is not None and x.dim() >= 2 and x.shape[1] > longest:
            raise ExplanationInputError(f"x has {x.shape[1]} tokens; the model takes at most {longest}")
        return x.detach().to(device=device, dtype=torch.long)
    if not x.is_floating_point():
        raise ExplanationInputError(f"x must be a floating-point tensor, got {x.dtype}")
    return x.detach().to(device=device, dtype=dtype)


def extra_inputs(extra: Extra, expected: Mapping[str, Binding], shape: tuple[int, ...],
                 device: torch.device) -> dict[str, torch.Tensor]:
    """The extra inputs by node name, each of the shape and dtype it was captured with (sizes following x's)."""
    given = dict(extra or {})
    if set(given) != set(expected):
        raise ExplanationInputError(f"the model was prepared with the extra input(s) {sorted(expected)}; got "
                                    f"{sorted(given)} (prepare it again to change them)")
    values = {}
    for argument, (node, bind) in expected.items():
        value, wanted = given[argument], bind(shape)["shape"]
        if not isinstance(value, torch.Tensor) or list(value.shape) != wanted:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ExplanationInputError(f"extra input '{argument}' must have shape {tuple(wanted)}, got {got}")
        values[node.name] = value.detach().to(device=device, dtype=getattr(torch, node.typed(ir.ExtraInputAttrs).dtype))
    return values
