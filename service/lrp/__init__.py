"""Graph-based Layer-wise Relevance Propagation for PyTorch models (imports torch only, no web code).

Entry point: `explain(model, x, target=None, composite="epsilon_plus_flat", **params)`.
"""

from service.lrp.composites import COMPOSITE_NAMES
from service.lrp.engine import Explanation, PreparedModel, explain, prepare
from service.lrp.errors import ExplanationInputError, LRPError, ModelPreparationError, UnsupportedLayerError
from service.lrp.graph import Graph, Node
from service.lrp.params import LRPParams
from service.lrp.precision import use_ieee_float32
from service.lrp.rules import RULE_NAMES

__all__ = [
    "COMPOSITE_NAMES",
    "RULE_NAMES",
    "Explanation",
    "ExplanationInputError",
    "Graph",
    "LRPError",
    "LRPParams",
    "ModelPreparationError",
    "Node",
    "PreparedModel",
    "UnsupportedLayerError",
    "explain",
    "prepare",
    "use_ieee_float32",
]
