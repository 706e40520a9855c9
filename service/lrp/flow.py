"""Which tensors of a graph carry relevance.

A tensor carries relevance when it depends on the explained input and is not held constant. Held constant are the
normalising factors of normalisations (sqrt, rsqrt, reciprocal or a vector norm of an activation, and what is
computed from them alone: AttnLRP Prop. 3.4) and, under CP-LRP, the attention weights (softmax outputs). Parameters,
buffers, constants, extra inputs (an attention mask) and `computed` tensors (position ids, masks, also when computed
from token ids) carry none.
"""

from __future__ import annotations

from service.lrp import graph as ir
from service.lrp.exceptions import ModelPreparationError
from service.lrp.ops import COMPUTED, CP, OPS, SOFTMAX, normalizing_factor

_SCALING_OPS = ("mul", "div")  # where a normalising factor may be used: scaling an activation


class Flow:
    """The relevance-carrying tensors of one graph, for each attention mode (computed once per mode)."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.live: set[str] = {graph.input.name}
        for node in graph.steps:
            if node.op != COMPUTED.name and any(name in self.live for name in node.inputs):
                self.live.add(node.name)
        self._carrying: dict[str, frozenset[str]] = {}
        self._check_factors()

    def held(self, attention: str) -> set[str]:
        """Live tensors held constant in this attention mode."""
        held: set[str] = set()
        for node in self.graph.steps:
            if node.name not in self.live:
                continue
            live_inputs = [name for name in node.inputs if name in self.live]
            if (normalizing_factor(node) or (attention == CP and node.op == SOFTMAX.name)
                    or (live_inputs and all(name in held for name in live_inputs))):
                held.add(node.name)
        return held

    def carrying(self, attention: str) -> frozenset[str]:
        """The tensors that relevance flows into in this attention mode ("" for the CNN composites)."""
        found = self._carrying.get(attention)
        if found is None:
            found = self._carrying[attention] = frozenset(self.live - self.held(attention))
        return found

    def _check_factors(self) -> None:
        """A normalising factor may only scale an activation (x * rsqrt(var + eps)); anywhere else holding it
        constant would drop relevance, so the model is refused."""
        held = self.held("")
        for node in self.graph.steps:
            if node.name in held or node.op in _SCALING_OPS:
                continue
            used = [name for name in node.inputs if name in held]
            if used:
                by_name = {n.name: n for n in self.graph.nodes}
                raise ModelPreparationError(
                    f"node '{node.name}' ({OPS[node.op].label}, {node.label}) reads '{used[0]}' "
                    f"({by_name[used[0]].label}), a normalising factor (sqrt, rsqrt, reciprocal or a norm of an "
                    "activation); LRP holds such a factor constant, so it may only multiply or divide an activation")
