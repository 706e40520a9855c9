"""Composites: which rule each Linear/Conv layer gets (zennit's named composites, single rules, rule maps)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.lrp import graph as ir
from service.lrp import rules
from service.lrp.errors import ExplanationInputError

# Rules of the layers without parameters, fixed in every composite.
PASS, NORM, GRADIENT = "pass", "norm", "gradient"
FIXED_RULES = {
    ir.ACTIVATION: PASS, ir.BATCHNORM: PASS, ir.MAXPOOL1D: GRADIENT, ir.MAXPOOL2D: GRADIENT,
    ir.AVGPOOL1D: NORM, ir.AVGPOOL2D: NORM, ir.ADAPTIVE_AVGPOOL1D: NORM, ir.ADAPTIVE_AVGPOOL2D: NORM,
    ir.ADD: NORM, ir.CAT: GRADIENT, ir.FLATTEN: GRADIENT, ir.RESHAPE: GRADIENT,
}
TYPE_KEYS = ("linear", "conv", "conv1d", "conv2d")


@dataclass(frozen=True)
class Composite:
    """A rule for nn.Linear, one for convolutions, an optional rule for the first layer of `first_ops`
    (first in execution order), and user overrides by layer type and by layer name (names win)."""

    name: str
    linear: str
    conv: str
    first: str | None = None
    first_ops: frozenset[str] = ir.AFFINE_OPS
    by_type: Mapping[str, str] = field(default_factory=dict)
    by_name: Mapping[str, str] = field(default_factory=dict)
    fixed_params: Mapping[str, float] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        """A hashable identity, for caching rule assignments."""
        return (self.name, self.linear, self.conv, self.first, self.first_ops,
                tuple(sorted(self.by_type.items())), tuple(sorted(self.by_name.items())))

    def assign(self, graph: ir.Graph) -> dict[str, str]:
        """The rule of every Linear/Conv node, by node name."""
        layers = graph.affine_nodes()
        known = {n.name for n in layers} | {n.module for n in layers if n.module}
        unknown = sorted(set(self.by_name) - known)
        if unknown:
            raise ExplanationInputError(
                f"rule map names layer(s) {unknown}, which are not Linear/Conv layers of this model; "
                f"its layers are {sorted(known)}")
        first = next((n.name for n in layers if n.op in self.first_ops), None) if self.first else None
        assigned = {}
        for node in layers:
            rule = self.linear if node.op == ir.LINEAR else self.conv
            if node.name == first and self.first:
                rule = self.first
            kind = "conv" if node.op in ir.CONV_OPS else "linear"
            rule = self.by_type.get(node.op, self.by_type.get(kind, rule))
            rule = self.by_name.get(node.name, self.by_name.get(node.module, rule))
            assigned[node.name] = rule
        return assigned

    def check_params(self, given: Mapping[str, Any]) -> None:
        """Refuse parameters that contradict the composite's name (epsilon_alpha2_beta1 with alpha=3)."""
        for name, value in self.fixed_params.items():
            if name in given and given[name] is not None and float(given[name]) != value:
                raise ExplanationInputError(
                    f"composite '{self.name}' fixes {name}={value:g}; use composite 'alpha_beta' or a rule map "
                    "to choose alpha and beta")


_A2B1 = {"alpha": 2.0, "beta": 1.0}
_CONVS = frozenset(ir.CONV_OPS)
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
}
COMPOSITE_NAMES = tuple(NAMED)


def resolve(composite: str | Mapping[str, Any] | Composite) -> Composite:
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
    base = resolve(composite.get("base", rules.EPSILON))
    by_type = _rule_table(composite.get("types") or {}, "types")
    bad_types = sorted(set(by_type) - set(TYPE_KEYS))
    if bad_types:
        raise ExplanationInputError(f"rule map types {bad_types} are not layer types; use {list(TYPE_KEYS)}")
    by_name = _rule_table(composite.get("layers") or {}, "layers")
    return Composite(f"{base.name}+map", base.linear, base.conv, base.first, base.first_ops,
                     {**base.by_type, **by_type}, {**base.by_name, **by_name})


def _rule_table(table: Any, what: str) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ExplanationInputError(f"rule map \"{what}\" must be an object of {{name: rule}}")
    bad = {k: v for k, v in table.items() if v not in rules.RULE_NAMES}
    if bad:
        raise ExplanationInputError(
            f"rule map \"{what}\" has unknown rule(s) {bad}; rules are {list(rules.RULE_NAMES)}")
    return {str(k): str(v) for k, v in table.items()}
