"""The op table: every op the engine can explain, each defined once in the module of its family.

The capture (service.lrp.capture, service.lrp.convert), the model format's checks (`check_node`), the composites'
layer types and the unsupported-layer message all read `OPS`. To add an op, define its `OpDef` and list it here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.lrp.graph import Graph, Node
from service.lrp.ops.activation import ACTIVATION, ACTIVATIONS, is_normalizer
from service.lrp.ops.affine import AFFINE, CONV1D, CONV2D, LINEAR, AffineOp
from service.lrp.ops.aten_call import CALLS, COMPUTED, LAYOUT
from service.lrp.ops.attention import ATTENTION, CP, SDPA, SOFTMAX
from service.lrp.ops.elementwise import ELEMENTWISE
from service.lrp.ops.normalization import BATCHNORM, NORMALIZATION, VECTOR_NORM
from service.lrp.ops.pooling import POOLING
from service.lrp.ops.reduce import EMBEDDING, REDUCE
from service.lrp.ops.spec import BackwardCall, Forward, OpDef, Read, Ref, Site, UnsupportedCallError
from service.lrp.ops.structure import CONSTANT, IDENTITY_CALLS, IDENTITY_LABEL, STRUCTURE

OPS: dict[str, OpDef] = {op.name: op for op in (*AFFINE, *NORMALIZATION, ACTIVATION, *POOLING, *STRUCTURE,
                                                *ELEMENTWISE, *ATTENTION, REDUCE, EMBEDDING, *CALLS)}
LAYER_TYPES = tuple(dict.fromkeys(op.layer_type for op in OPS.values() if op.layer_type))  # linear, conv
# the keys a rule map's "types" accepts: a layer type ("conv") or a rule-chosen op's own name ("conv2d")
RULE_MAP_TYPES = LAYER_TYPES + tuple(op.name for op in OPS.values() if op.layer_type and op.name not in LAYER_TYPES)
SUPPORTED = ", ".join([op.label for op in OPS.values()] + [IDENTITY_LABEL])


def normalizing_factor(node: Node) -> bool:
    """Whether the node computes a normalising factor (sqrt, rsqrt, reciprocal, a vector norm of an activation)."""
    return is_normalizer(node) or node.op == VECTOR_NORM.name


def rule_nodes(graph: Graph) -> list[Node]:
    """The nodes whose rule the composite chooses (Linear, Conv), in execution order."""
    return [node for node in graph.steps if OPS[node.op].layer_type]


def check_node(name: str, op: str, inputs: int, attrs: Mapping[str, Any], params: Sequence[str]) -> None:
    """Raise ValueError saying what is wrong with a node read from a file: its op, inputs, attrs or params."""
    definition = OPS.get(op)
    if definition is None:
        raise ValueError(f"node '{name}': unsupported op '{op}'; supported ops are {sorted(OPS)}")
    definition.check(name, inputs, attrs, params)


def nonnegative_outputs(graph: Graph) -> set[str]:
    """Names of nodes whose output is >= 0 for every input: ReLU-like ops, then sign-keeping ops of those."""
    found: set[str] = set()
    for node in graph.steps:
        definition = OPS[node.op]
        if definition.nonnegative(node) or (definition.keeps_sign and all(name in found for name in node.inputs)):
            found.add(node.name)
    return found


__all__ = ["ACTIVATIONS", "BATCHNORM", "COMPUTED", "CONSTANT", "CONV1D", "CONV2D", "CP", "EMBEDDING",
           "IDENTITY_CALLS", "LAYER_TYPES", "LAYOUT", "LINEAR", "OPS", "RULE_MAP_TYPES", "SDPA", "SOFTMAX", "SUPPORTED",
           "AffineOp", "BackwardCall", "Forward", "OpDef", "Read", "Ref", "Site", "UnsupportedCallError", "check_node",
           "nonnegative_outputs", "normalizing_factor", "rule_nodes"]
