"""Composites: which rule each rule-chosen layer (Linear, Conv) gets: zennit's named composites, single rules and
rule maps. Every other op has its fixed rule in the op table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.lrp import graph as ir
from service.lrp import rules
from service.lrp.exceptions import ExplanationInputError
from service.lrp.ops import CP, OPS, RULE_MAP_TYPES, rule_nodes

RuleTable = tuple[tuple[str, str], ...]  # (layer type or name, rule) pairs, sorted: hashable
# a composite as a request names it: a name, or a rule map {"base": name, "types": {...}, "layers": {...}} to check
CompositeSpec = str | Mapping[str, object]


@dataclass(frozen=True)
class Composite:
    """A rule for Linear layers, one for convolutions, an optional rule for the first layer whose type is in
    `first_types` (first in execution order), and user overrides by layer type and by layer name (names win).
    Hashable: a resolved composite is part of a batch key."""

    name: str
    linear: str
    conv: str
    first: str | None = None
    first_types: frozenset[str] = frozenset({"linear", "conv"})
    by_type: RuleTable = ()
    by_name: RuleTable = ()
    fixed_params: tuple[tuple[str, float], ...] = ()  # parameters its name implies: (("alpha", 2.0), ("beta", 1.0))
    attention: str = ""  # "attnlrp" or "cp" (CP-LRP): a transformer composite, whose fixed rules use `epsilon`

    def assign(self, graph: ir.Graph) -> dict[str, str]:
        """The rule of every rule-chosen node, by node name."""
        layers = rule_nodes(graph)
        by_type, by_name = dict(self.by_type), dict(self.by_name)
        known = {n.name for n in layers} | {n.module for n in layers if n.module}
        unknown = sorted(set(by_name) - known)
        if unknown:
            raise ExplanationInputError(
                f"rule map names layer(s) {unknown}, which are not Linear/Conv layers of this model; "
                f"its layers are {sorted(known)}")
        first = next((n.name for n in layers if OPS[n.op].layer_type in self.first_types), None)
        assigned = {}
        for node in layers:
            layer_type = OPS[node.op].layer_type
            rule = self.linear if layer_type == "linear" else self.conv
            if self.first and node.name == first:
                rule = self.first
            rule = by_type.get(node.op, by_type.get(layer_type, rule))
            assigned[node.name] = by_name.get(node.name, by_name.get(node.module, rule))
        return assigned

    def check_params(self, given: Mapping[str, Any]) -> None:
        """Refuse parameters that contradict the composite's name (epsilon_alpha2_beta1 with alpha=3)."""
        for name, value in self.fixed_params:
            if given.get(name) is not None and float(given[name]) != value:
                raise ExplanationInputError(
                    f"composite '{self.name}' fixes {name}={value:g}; use composite 'alpha_beta' or a rule map "
                    "to choose alpha and beta")


_A2B1 = (("alpha", 2.0), ("beta", 1.0))
_CONVS = frozenset({"conv"})
NAMED: dict[str, Composite] = {
    "epsilon_plus": Composite("epsilon_plus", rules.EPSILON, rules.ZPLUS),
    "epsilon_plus_flat": Composite("epsilon_plus_flat", rules.EPSILON, rules.ZPLUS, rules.FLAT),
    "epsilon_gamma_box": Composite("epsilon_gamma_box", rules.EPSILON, rules.GAMMA, rules.ZBOX, _CONVS),
    "epsilon_alpha2_beta1": Composite("epsilon_alpha2_beta1", rules.EPSILON, rules.ALPHA_BETA,
                                      fixed_params=_A2B1),
    "epsilon_alpha2_beta1_flat": Composite("epsilon_alpha2_beta1_flat", rules.EPSILON, rules.ALPHA_BETA,
                                           rules.FLAT, fixed_params=_A2B1),
    **{name: Composite(name, name, name)
       for name in (rules.EPSILON, rules.ZPLUS, rules.GAMMA, rules.ALPHA_BETA, rules.WSQUARE, rules.FLAT)},
    "attnlrp": Composite("attnlrp", rules.EPSILON, rules.EPSILON, attention="attnlrp"),
    "cp_lrp": Composite("cp_lrp", rules.EPSILON, rules.EPSILON, attention=CP),
}
COMPOSITE_NAMES = tuple(NAMED)


def resolve(composite: CompositeSpec | Composite) -> Composite:
    """A Composite from a name, or from a rule map {"base": name, "types": {...}, "layers": {...}}."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str):
        if composite not in NAMED:
            raise ExplanationInputError(f"unknown composite '{composite}'; choose one of {list(NAMED)} "
                                        "or send a rule map {\"base\", \"types\", \"layers\"}")
        return NAMED[composite]
    if not isinstance(composite, Mapping):
        raise ExplanationInputError("composite must be a name or a rule map {\"base\", \"types\", \"layers\"}")
    extra = sorted(set(composite) - {"base", "types", "layers"})
    if extra:
        raise ExplanationInputError(f"unknown rule map key(s) {extra}; use \"base\", \"types\" and \"layers\"")
    base_spec = composite.get("base", rules.EPSILON)
    if not isinstance(base_spec, str | Mapping):
        raise ExplanationInputError("composite must be a name or a rule map {\"base\", \"types\", \"layers\"}")
    base = resolve(base_spec)
    by_type = _rule_table(composite.get("types") or {}, "types")
    bad_types = sorted(set(by_type) - set(RULE_MAP_TYPES))
    if bad_types:
        raise ExplanationInputError(f"rule map types {bad_types} are not layer types; use {list(RULE_MAP_TYPES)}")
    by_name = _rule_table(composite.get("layers") or {}, "layers")
    return Composite(f"{base.name}+map", base.linear, base.conv, base.first, base.first_types,
                     _sorted({**dict(base.by_type), **by_type}), _sorted({**dict(base.by_name), **by_name}),
                     attention=base.attention)


def _sorted(table: Mapping[str, str]) -> RuleTable:
    return tuple(sorted(table.items()))


def _rule_table(table: object, what: str) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ExplanationInputError(f"rule map \"{what}\" must be an object of {{name: rule}}")
    bad = {k: v for k, v in table.items() if v not in rules.RULE_NAMES}
    if bad:
        raise ExplanationInputError(
            f"rule map \"{what}\" has unknown rule(s) {bad}; rules are {list(rules.RULE_NAMES)}")
    return {str(k): str(v) for k, v in table.items()}
