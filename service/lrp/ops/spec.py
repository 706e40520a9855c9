"""The vocabulary of the op table: an op's typed attributes, its forward, its relevance rule and how the tracer
recognises it in a captured model. Every op of the engine is one `OpDef`; nothing else describes it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from service.lrp.graph import Node

# forward(node, inputs) -> (output, what the backward needs besides inputs and output)
Forward = Callable[[Node, list[torch.Tensor]], tuple[torch.Tensor, Any]]
# backward(node, inputs, output, saved, output relevance, stabilizer) -> the relevance of each input
Backward = Callable[[Node, list[torch.Tensor], torch.Tensor, Any, torch.Tensor, float], list[torch.Tensor]]


class UnsupportedCallError(Exception):
    """A call the tracer found that no op of the table can take as written; the text says what it is."""


@dataclass(frozen=True)
class AttrType:
    """What an attribute value must be, said in words (for error messages) and as a check."""

    description: str
    check: Callable[[Any], bool]


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def ints(count: int) -> AttrType:
    """A list of exactly `count` ints."""
    return AttrType(f"a list of {count} int(s)",
                    lambda v: isinstance(v, list) and len(v) == count and all(is_int(i) for i in v))


def ints_of(value: Any, dims: int) -> list[int]:
    """A hyperparameter as torch takes it (an int, or a sequence of one or `dims` ints) as a list of `dims` ints."""
    if isinstance(value, int):
        return [value] * dims
    values = [int(v) for v in value]
    return values * dims if len(values) == 1 else values


def choice(values: Sequence[str]) -> AttrType:
    """One of the given strings."""
    return AttrType(f"one of {list(values)}", lambda v: v in values)


INT = AttrType("an int", is_int)
NON_BATCH_DIM = AttrType("an int other than 0 (dimension 0 is the batch)", lambda v: is_int(v) and v != 0)
BOOL = AttrType("true or false", lambda v: isinstance(v, bool))
NUMBER = AttrType("a finite number",
                  lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
INT_LIST = AttrType("a list of ints", lambda v: isinstance(v, list) and all(is_int(i) for i in v))


@dataclass(frozen=True)
class Attr:
    """A named hyperparameter of an op; an optional one may be left out (the forward then uses its default)."""

    name: str
    type: AttrType
    required: bool = True


@dataclass(frozen=True)
class Site:
    """One call found in a captured model: the module called (None for functions and methods), its positional
    arguments as written (a method's first is the tensor it is called on) and its keyword arguments (by parameter
    name for every argument where the tracer could match the call to its signature), tensors still as the
    tracer's references."""

    module: nn.Module | None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def arg(self, position: int, name: str, default: Any = None) -> Any:
        """An argument by parameter name, else by position, else `default`."""
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[position] if position < len(self.args) else default


# reader(site) -> (the tensor arguments in input order, the node's attrs); raises UnsupportedCallError
Reader = Callable[[Site], tuple[list[Any], dict[str, Any]]]


def no_nonnegative_output(node: Node) -> bool:
    """The default: nothing is known about the sign of the op's output."""
    return False


@dataclass(frozen=True)
class OpDef:
    """One op of the engine.

    A rule-chosen op (`layer_type` set: "linear", "conv") gets its rule from the composite; every other op has a
    fixed `backward`, shown under `fixed_rule`. `keeps_sign`: non-negative inputs give a non-negative output;
    `nonnegative(node)`: the output is non-negative whatever the input (ReLU). Captured from calls of `modules`
    (by class), `functions` and tensor `methods`, each with the reader that turns the call into attrs.
    """

    name: str
    label: str
    forward: Forward
    backward: Backward | None = None
    fixed_rule: str = ""
    layer_type: str = ""
    inputs: int = 1  # 0: one or more
    attrs: tuple[Attr, ...] = ()
    params: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()
    keeps_sign: bool = False
    nonnegative: Callable[[Node], bool] = no_nonnegative_output
    dependent_attrs: Callable[[Mapping[str, Any]], tuple[Attr, ...]] = lambda attrs: ()
    modules: Mapping[type[nn.Module], Reader] = field(default_factory=dict)
    functions: Mapping[Callable[..., Any], Reader] = field(default_factory=dict)
    methods: Mapping[str, Reader] = field(default_factory=dict)

    def attributes(self, attrs: Mapping[str, Any]) -> tuple[Attr, ...]:
        """The attributes a node of this op may hold; some depend on others (an activation's options on `fn`)."""
        return self.attrs + self.dependent_attrs(attrs)

    def check(self, node: str, inputs: int, attrs: Mapping[str, Any], params: Sequence[str]) -> None:
        """Raise ValueError saying what is wrong with a node of this op read from a file."""
        if (self.inputs and inputs != self.inputs) or not inputs:
            raise ValueError(f"node '{node}': op '{self.name}' takes {self.inputs or 'one or more'} input(s), "
                             f"got {inputs}")
        allowed = self.attributes(attrs)
        for attr in allowed:
            if attr.name in attrs and not attr.type.check(attrs[attr.name]):
                raise ValueError(f"node '{node}': op '{self.name}' attribute '{attr.name}' must be "
                                 f"{attr.type.description}, got {attrs[attr.name]!r}")
            if attr.required and attr.name not in attrs:
                raise ValueError(f"node '{node}': op '{self.name}' needs the attribute '{attr.name}' "
                                 f"({attr.type.description})")
        extra = sorted(set(attrs) - {attr.name for attr in allowed})
        if extra:
            raise ValueError(f"node '{node}': unknown attribute(s) {extra} for op '{self.name}'; it takes "
                             f"{[attr.name for attr in allowed]}")
        missing = [p for p in self.params if p not in params]
        unknown = sorted(set(params) - set(self.params) - set(self.optional_params))
        if missing or unknown:
            raise ValueError(f"node '{node}': op '{self.name}' needs params {list(self.params)} "
                             f"(optional {list(self.optional_params)}); missing {missing}, unknown {unknown}")
