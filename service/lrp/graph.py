"""The LRP graph IR: a topologically ordered list of nodes, shared by the torch.export and model.json front doors.
What each op computes and how its relevance flows is in the op table (service.lrp.ops).

A node's `attrs` hold JSON-serialisable hyperparameters; its `params` hold tensors (a module called twice
gives two nodes sharing the same tensors). The inputs come first: the explained input, then any extra inputs (an
attention mask: arguments that carry no relevance); `output` names the logits node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from service.lrp import dims

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

INPUT = "input"  # the op of the input nodes, which come first; every other op is in the op table (service.lrp.ops)
OUTPUT_ACTIVATIONS = ("logits", "softmax", "log_softmax", "sigmoid")
TOKEN_DTYPES = ("int64", "int32")  # the explained input's "dtype" when it holds token ids
EXTRA_DTYPES = ("int64", "int32", "bool", "float32", "float64")  # an extra input's "dtype"
AttrsT = TypeVar("AttrsT", bound="DataclassInstance")  # an op's attributes class


def check_input(node: str, attrs: Mapping[str, Any], explained: bool) -> None:
    """Raise ValueError saying what is wrong with an input node's attributes read from a file.

    The explained input: none (a floating-point input), or "dtype" (token ids) with an optional "max_tokens" (the
    longest input the model takes). An extra input: "argument" (its keyword in the forward), "shape" (sizes, the
    first ones following the explained input's as {"expr": "d0"}) and "dtype"."""
    allowed = {"dtype", "max_tokens"} if explained else {"argument", "shape", "dtype"}
    unknown = sorted(set(attrs) - allowed)
    if unknown:
        raise ValueError(f"node '{node}': unknown attribute(s) {unknown} for an input; it takes {sorted(allowed)}")
    dtype = attrs.get("dtype")
    if explained:
        if dtype is not None and dtype not in TOKEN_DTYPES:
            raise ValueError(f"node '{node}': the input's dtype must be one of {list(TOKEN_DTYPES)} (token ids), or "
                             "left out for a floating-point input")
        longest = attrs.get("max_tokens")
        if longest is not None and (dtype is None or not _positive_int(longest)):
            raise ValueError(f"node '{node}': max_tokens must be a positive int, on an input of token ids")
        return
    missing = sorted({"argument", "shape", "dtype"} - set(attrs))
    if missing:
        raise ValueError(f"node '{node}': an extra input needs the attribute(s) {missing}")
    if not isinstance(attrs["argument"], str) or not attrs["argument"].isidentifier():
        raise ValueError(f"node '{node}': argument must be the forward's keyword (an identifier)")
    if dtype not in EXTRA_DTYPES:
        raise ValueError(f"node '{node}': an extra input's dtype must be one of {list(EXTRA_DTYPES)}")
    shape = attrs["shape"]
    if not isinstance(shape, list) or not all(_positive_int(size) or dims.is_expr(size) for size in shape):
        raise ValueError(f"node '{node}': shape must be a list of positive ints or {{\"expr\": ...}} sizes")
    dims.check(shape)


@dataclass(frozen=True)
class InputAttrs:
    """The explained input's attributes: none for a floating-point input, or the dtype of its token ids and the
    longest input the model takes (check_input holds a file to these)."""

    dtype: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ExtraInputAttrs:
    """An extra input's attributes: the forward's keyword it is passed as, its shape (the first sizes following the
    explained input's, as {"expr": ...}) and its dtype."""

    argument: str
    shape: list[Any]
    dtype: str


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Node:
    """One operation: `op` applied to the outputs of the nodes named in `inputs`."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, torch.Tensor] = field(default_factory=dict)
    module: str = ""  # the owning module's path ("features.0"); empty for functional calls

    @property
    def label(self) -> str:
        """The layer name people know: the module path, or the node name for functional calls."""
        return self.module or self.name

    def typed(self, kind: type[AttrsT]) -> AttrsT:
        """The attributes as `kind`, a dataclass whose fields are the op's attribute names (optional ones with a
        default), made once per node. The attributes were checked when the node was read from a file
        (OpDef.check) or written by the capture's readers."""
        cache: dict[type[Any], Any] = self.__dict__.setdefault("_typed", {})  # not a field: replace() starts afresh
        found = cache.get(kind)
        if found is None:
            names = {f.name for f in fields(kind)}
            found = cache[kind] = kind(**{name: value for name, value in self.attrs.items() if name in names})
        assert isinstance(found, kind)
        return found

    def with_params(self, params: Mapping[str, torch.Tensor]) -> Node:
        """A copy of this node holding other tensors."""
        return replace(self, params=dict(params))


@dataclass(frozen=True)
class Graph:
    """Nodes in execution order; `nodes[0]` is the explained input, followed by the extra inputs (if any); `output`
    is the node whose value is the logits. A [batch, positions, classes] output is read at its last position (a
    language model's next token) unless `per_position`: then every position's logits are the outputs, flattened to
    [batch, positions * classes] (output p * classes + c is position p's class c: token classification)."""

    nodes: tuple[Node, ...]
    output: str
    output_activation: str = "logits"
    folded: Mapping[str, str] = field(default_factory=dict)  # BatchNorm layer -> the layer it was folded into
    per_position: bool = False

    def __post_init__(self) -> None:
        names = [node.name for node in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("graph node names must be unique")
        if not self.nodes or self.nodes[0].op != INPUT:
            raise ValueError("the first graph node must be the input")
        if any(node.op == INPUT for node in self.steps):
            raise ValueError("input nodes must come before every other node")
        known: set[str] = set()
        for node in self.nodes:
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise ValueError(f"node '{node.name}' reads {missing} before they are computed")
            known.add(node.name)
        if self.output not in known:
            raise ValueError(f"output node '{self.output}' is not in the graph")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")

    @property
    def input(self) -> Node:
        """The explained input's node."""
        return self.nodes[0]

    @property
    def extra_inputs(self) -> tuple[Node, ...]:
        """The other inputs of the model's forward (an attention mask), which carry no relevance."""
        return self.nodes[1:self._input_count()]

    @property
    def steps(self) -> tuple[Node, ...]:
        """The nodes after the inputs, in execution order."""
        return self.nodes[self._input_count():]

    def _input_count(self) -> int:
        return next((i for i, node in enumerate(self.nodes) if node.op != INPUT), len(self.nodes))

    def consumers(self) -> dict[str, list[str]]:
        """For every node, the names of the nodes that read its output (a node reading twice counts twice)."""
        users: dict[str, list[str]] = {node.name: [] for node in self.nodes}
        for node in self.nodes:
            for name in node.inputs:
                users[name].append(node.name)
        return users
