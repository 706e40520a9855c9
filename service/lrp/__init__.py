"""Graph-based Layer-wise Relevance Propagation for PyTorch models (imports torch only, no web code).

Entry point: `explain(model, x, target=None, composite="epsilon_plus_flat", **params)`. The ops it can explain
are the op table `OPS`; `check_node` validates a node read from a file against it.

Imports: torch only (no other package of the service).
"""

from service.lrp.capture import graph_from_module
from service.lrp.composites import COMPOSITE_NAMES, Composite
from service.lrp.engine import PreparedModel
from service.lrp.exceptions import ExplanationInputError, LRPError, ModelPreparationError, UnsupportedLayerError
from service.lrp.explanation import Explanation, Method, output_from_logits
from service.lrp.graph import INPUT, OUTPUT_ACTIVATIONS, Graph, Node, check_input
from service.lrp.ops import OPS, check_node
from service.lrp.ops.spec import UnevenSelectionError
from service.lrp.params import Bound, LRPParams
from service.lrp.precision import use_ieee_float32
from service.lrp.prepare import explain, prepare
from service.lrp.rules import RULE_NAMES

__all__ = [
    "COMPOSITE_NAMES",
    "INPUT",
    "OPS",
    "OUTPUT_ACTIVATIONS",
    "RULE_NAMES",
    "Bound",
    "Composite",
    "Explanation",
    "ExplanationInputError",
    "Graph",
    "LRPError",
    "LRPParams",
    "Method",
    "ModelPreparationError",
    "Node",
    "PreparedModel",
    "UnevenSelectionError",
    "UnsupportedLayerError",
    "check_input",
    "check_node",
    "explain",
    "graph_from_module",
    "output_from_logits",
    "prepare",
    "use_ieee_float32",
]
