"""What the conversion needs to know about the calls of a graph captured by torch.export: the module each came from,
whether its output carries relevance, its out-of-place form, its arguments with constants in place, which calls the
output needs, and whether an index by a mask runs the batch's samples together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx

from service.lrp import dims
from service.lrp.ops import EMBEDDING, IDENTITY_CALLS, LAYOUT, Ref, UnsupportedCallError
from service.lrp.ops.structure import CAT, FLATTEN, RESHAPE

# ops that move token ids as they are (a view, a cat with a class token's id) or look them up (an embedding)
_MOVES_TOKENS = {call for op in (EMBEDDING, LAYOUT, RESHAPE, FLATTEN, CAT) for call in op.aten} | set(IDENTITY_CALLS)


def module_of(node: torch.fx.Node) -> str:
    """The path of the innermost module that made the call ("" for the model's own forward)."""
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


def module_class(node: torch.fx.Node) -> str:
    """The class name of the innermost module that made the call ("" for the model's own forward)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    kind = list(stack.values())[-1][1]
    return (kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))).rsplit(".", 1)[-1]


def where(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "in the model's forward"
    path, kind = list(stack.values())[-1]
    if not path:
        return "in the model's forward"
    return f"in module '{path}' ({kind if isinstance(kind, str) else getattr(kind, '__qualname__', kind)})"


def carries(target: Any, refs: list[Ref], val: Any) -> bool:
    """Whether a call's output carries relevance: it reads a live tensor, and either moves token ids as they are or
    computes a floating-point value from a live floating-point tensor (comparisons and counts carry none)."""
    live = [r for r in refs if r.live]
    if not live or target in _MOVES_TOKENS:
        return bool(live)
    values = list(val) if isinstance(val, list | tuple) else [val]
    floating = any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in values)
    return floating and any(not r.discrete for r in live)


def out_of_place(target: torch._ops.OpOverload) -> torch._ops.OpOverload:
    """The functional overload of an in-place call (masked_fill_.Scalar -> masked_fill.Scalar)."""
    packet = getattr(torch.ops.aten, target._schema.name.removeprefix("aten::").rstrip("_"), None)
    found = getattr(packet, target._overloadname, None)
    if found is None:
        raise UnsupportedCallError(f"in-place {target} without an out-of-place form")
    return found  # type: ignore[no-any-return]


def is_view(node: torch.fx.Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return bool(schema and schema.returns and schema.returns[0].alias_info is not None)


def flatten(values: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for value in values:
        flat.extend(flatten(list(value)) if isinstance(value, list | tuple) else [value])
    return flat


def concrete(value: Any, refs: dict[str, Any]) -> Any:
    """A call's fx arguments with every constant tensor in place."""
    if isinstance(value, torch.fx.Node):
        ref = refs[value.name]
        return [r.value for r in ref] if isinstance(ref, list) else (ref.value if isinstance(ref, Ref) else ref)
    if isinstance(value, dict):
        return {k: concrete(v, refs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(concrete(v, refs) for v in value)
    return value


def as_refs(name: str, result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return Ref(name, tuple(result.shape), False, result)
    return [Ref(f"{name}_{i}", tuple(t.shape), False, t) for i, t in enumerate(result)]


def needed(graph: torch.fx.Graph) -> set[str]:
    """The calls the output depends on, every in-place call (a write matters unread) and the inputs; calls that only
    feed runtime checks (torch._check on a count of the input's values, T5's "all examples have as many <eos>") are
    left out."""
    roots = [node for node in graph.nodes if node.op in ("output", "placeholder") or
             getattr(getattr(node.target, "_schema", None), "is_mutable", False)]
    needed: set[str] = set()
    while roots:
        node = roots.pop()
        if node.name not in needed:
            needed.add(node.name)
            roots.extend(node.all_input_nodes)
    return needed


def masks_the_batch(node: torch.fx.Node, size: Callable[[Any], Any]) -> bool:
    """An index by a boolean mask whose first dimension is the batch (`size` of it is d0): its rows are every
    sample's, run together (the engine checks that each sample gives as many)."""
    if node.target is not torch.ops.aten.index.Tensor or not node.args[1]:
        return False
    first = node.args[1][0]  # type: ignore[index]
    val = first.meta.get("val") if isinstance(first, torch.fx.Node) else None
    return isinstance(val, torch.Tensor) and val.dtype == torch.bool and val.dim() >= 1 and \
        size(val.shape[0]) == {dims.EXPR: "d0"}
