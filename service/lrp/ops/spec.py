"""The vocabulary of the op table: an op's typed attributes, its forward, its relevance rule and how the tracer
recognises it in a captured model. Every op of the engine is one `OpDef`; nothing else describes it."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeGuard

import torch

from service.lrp import dims
from service.lrp.graph import Node

# forward(node, inputs) -> (output, what the backward needs besides inputs and output)
Forward = Callable[[Node, list[torch.Tensor]], tuple[torch.Tensor, object]]


@dataclass(frozen=True)
class BackwardCall:
    """What a fixed rule sees: the node, its input values, its output, what its forward saved, the relevance of its
    output, the stabiliser of its divisions, which inputs carry relevance (`live`: not a constant, a parameter or a
    normalising factor) and the composite's attention mode ("attnlrp": through Q, K and V; "cp": V only)."""

    node: Node
    args: list[torch.Tensor]
    out: torch.Tensor
    saved: object
    relevance: torch.Tensor
    stabilizer: float
    live: tuple[bool, ...]
    attention: str = "attnlrp"

    def saved_tensor(self) -> torch.Tensor:
        """What the forward saved, for an op whose forward saves one tensor."""
        assert isinstance(self.saved, torch.Tensor), f"op '{self.node.op}' saves one tensor for its backward"
        return self.saved


# backward(call) -> the relevance of each input (None for an input that carries none)
Backward = Callable[[BackwardCall], list["torch.Tensor | None"]]


class UnsupportedCallError(Exception):
    """A call the tracer found that no op of the table can take as written; the text says what it is."""


class UnevenSelectionError(ValueError):
    """A boolean mask over the batch (T5's <eos> tokens) selects a different number of elements in the samples of
    one batch, or none: the rows the model regroups per sample would mix samples. Each sample alone is consistent
    (one per batch), so a caller runs the samples one by one."""


@dataclass(frozen=True)
class AttrType:
    """What an attribute value must be, said in words (for error messages) and as a check."""

    description: str
    check: Callable[[object], bool]


def is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def ints(count: int) -> AttrType:
    """A list of exactly `count` ints."""
    return AttrType(f"a list of {count} int(s)",
                    lambda v: isinstance(v, list) and len(v) == count and all(is_int(i) for i in v))


def ints_of(value: Any, count: int) -> list[int]:
    """A hyperparameter as torch takes it (an int, or a sequence of one or `count` ints) as a list of `count` ints."""
    if isinstance(value, int):
        return [value] * count
    values = [int(v) for v in value]
    return values * count if len(values) == 1 else values


def choice(values: Sequence[str]) -> AttrType:
    """One of the given strings."""
    return AttrType(f"one of {list(values)}", lambda v: v in values)


INT = AttrType("an int", is_int)
NON_BATCH_DIM = AttrType("an int other than 0 (dimension 0 is the batch)", lambda v: is_int(v) and v != 0)
BOOL = AttrType("true or false", lambda v: isinstance(v, bool))
NUMBER = AttrType("a finite number",
                  lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
INT_LIST = AttrType("a list of ints", lambda v: isinstance(v, list) and all(is_int(i) for i in v))
SIZES = AttrType('a list of ints or {"expr": ...} sizes',
                 lambda v: isinstance(v, list) and all(is_int(i) or dims.is_expr(i) for i in v))


@dataclass(frozen=True)
class Attr:
    """A named hyperparameter of an op; an optional one may be left out (the forward then uses its default)."""

    name: str
    type: AttrType
    required: bool = True


# In an op's attributes class, stands for "one int per spatial dimension": attrs_of(kind, dims) makes it ints(dims).
SPATIAL = AttrType("one int per spatial dimension", lambda value: False)


def attrs_of(kind: type[Any], dims: int = 0) -> tuple[Attr, ...]:
    """The attributes an op's attributes class declares, in order: each field `name: Annotated[T, AttrType]` is one,
    required unless it has a default (a node reads them as that class with `Node.typed`)."""
    hints = typing.get_type_hints(kind, include_extras=True)
    found = []
    for declared in fields(kind):
        check = next(m for m in getattr(hints[declared.name], "__metadata__", ()) if isinstance(m, AttrType))
        found.append(Attr(declared.name, ints(dims) if check is SPATIAL else check,
                          required=declared.default is MISSING and declared.default_factory is MISSING))
    return tuple(found)


@dataclass(frozen=True)
class Ref:
    """A tensor argument of a captured call: the graph node that computes it, its shape (ints, or {"expr": ...} for
    sizes that follow the input's, see service.lrp.dims), and whether it carries relevance from the explained input
    (`live`). `value` is the tensor itself when it is a parameter, a buffer or a constant the capture could compute.
    `discrete`: integer or bool values (token ids and what moves them: relevance reaches them through an embedding)."""

    name: str
    shape: tuple[Any, ...]
    live: bool
    value: torch.Tensor | None = None
    discrete: bool = False

    @property
    def rank(self) -> int:
        """The number of dimensions."""
        return len(self.shape)


@dataclass(frozen=True)
class Site:
    """One ATen call found in a captured model: its arguments by schema name (defaults filled in; tensors as `Ref`,
    sizes that follow the input as {"expr": ...}), its output's shape, the path of the module it came from and its
    output's dtype (a torch dtype name, "" when it returns no single tensor)."""

    target: str
    args: Mapping[str, Any]
    out_shape: tuple[Any, ...] = ()
    module: str = ""
    out_dtype: str = ""

    def arg(self, name: str, default: Any = None) -> Any:
        """An argument by schema name, else `default`."""
        value = self.args.get(name, default)
        return default if value is None else value

    def tensor(self, name: str) -> Ref:
        """A tensor argument; anything else is an unsupported use."""
        value = self.args.get(name)
        if not isinstance(value, Ref):
            raise UnsupportedCallError(f"{self.target} whose '{name}' is not a tensor")
        return value

    def parameter(self, name: str) -> torch.Tensor | None:
        """A parameter-like argument (a weight or bias): the tensor, None when absent; a computed one is refused."""
        value = self.args.get(name)
        if value is None:
            return None
        if not isinstance(value, Ref) or value.value is None or value.live:
            raise UnsupportedCallError(f"{self.target} whose {name} is computed from the input (it must be a "
                                       "parameter or a buffer)")
        return value.value


def normalize_dim(dim: int, rank: int) -> int:
    """A dimension index as a non-negative int (torch accepts -rank..rank-1)."""
    return dim + rank if dim < 0 else dim


@dataclass(frozen=True)
class Read:
    """What a reader makes of a call: the tensor inputs in order, the node's attrs and its parameters."""

    inputs: list[Ref]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    op: str = ""  # another op of the table than the reader's own, when the call is better written as that one


# reader(site) -> the node it becomes; raises UnsupportedCallError when no node of the op can compute it
Reader = Callable[[Site], Read]


def no_nonnegative_output(node: Node) -> bool:
    """The default: nothing is known about the sign of the op's output."""
    return False


ANY_INPUTS = -1


@dataclass(frozen=True)
class OpDef:
    """One op of the engine.

    A rule-chosen op (`layer_type` set: "linear", "conv") gets its rule from the composite; every other op has a
    fixed `backward`, shown under `fixed_rule`. `saving_forward`, when set, replaces `forward` when a backward
    follows and saves what the backward would otherwise recompute (attention weights that a fused kernel never
    materialises). `keeps_sign`: non-negative inputs give a non-negative output;
    `nonnegative(node)`: the output is non-negative whatever the input (ReLU). Captured from the ATen calls in
    `aten` (torch.export's graph), each with the reader that turns the call into a node.
    """

    name: str
    label: str
    forward: Forward
    backward: Backward | None = None
    fixed_rule: str = ""
    saving_forward: Forward | None = None
    layer_type: str = ""
    inputs: int | None = 1  # None: one or more; ANY_INPUTS: any number, none included
    arity: tuple[int, ...] = ()  # the input counts allowed when there is a choice (a product of 1 or 2 tensors)
    attrs: tuple[Attr, ...] = ()
    params: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()
    keeps_sign: bool = False
    nonnegative: Callable[[Node], bool] = no_nonnegative_output
    dependent_attrs: Callable[[Mapping[str, Any]], tuple[Attr, ...]] = lambda attrs: ()
    aten: Mapping[Any, Reader] = field(default_factory=dict)  # ATen overload -> reader

    def attributes(self, attrs: Mapping[str, Any]) -> tuple[Attr, ...]:
        """The attributes a node of this op may hold; some depend on others (an activation's options on `fn`)."""
        return self.attrs + self.dependent_attrs(attrs)

    def check(self, node: str, inputs: int, attrs: Mapping[str, Any], params: Sequence[str]) -> None:
        """Raise ValueError saying what is wrong with a node of this op read from a file."""
        allowed_counts = self.arity or ((self.inputs,) if self.inputs not in (None, ANY_INPUTS) else ())
        if (allowed_counts and inputs not in allowed_counts) or (self.inputs is None and not inputs):
            said = " or ".join(map(str, allowed_counts)) if allowed_counts else "one or more"
            raise ValueError(f"node '{node}': op '{self.name}' takes {said} input(s), got {inputs}")
        allowed = self.attributes(attrs)
        extra = sorted(set(attrs) - {attr.name for attr in allowed})
        if extra:  # before any value is read: an unknown attribute may hold anything
            raise ValueError(f"node '{node}': unknown attribute(s) {extra} for op '{self.name}'; it takes "
                             f"{[attr.name for attr in allowed]}")
        dims.check(dict(attrs))
        for attr in allowed:
            if attr.name in attrs and not attr.type.check(attrs[attr.name]):
                raise ValueError(f"node '{node}': op '{self.name}' attribute '{attr.name}' must be "
                                 f"{attr.type.description}, got {attrs[attr.name]!r}")
            if attr.required and attr.name not in attrs:
                raise ValueError(f"node '{node}': op '{self.name}' needs the attribute '{attr.name}' "
                                 f"({attr.type.description})")
        missing = [p for p in self.params if p not in params]
        unknown = sorted(set(params) - set(self.params) - set(self.optional_params))
        if missing or unknown:
            raise ValueError(f"node '{node}': op '{self.name}' needs params {list(self.params)} "
                             f"(optional {list(self.optional_params)}); missing {missing}, unknown {unknown}")
