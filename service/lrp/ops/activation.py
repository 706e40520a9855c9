"""Element-wise activations: one op, `activation`, whose `fn` attribute picks the function. Relevance passes
through unchanged (R_in = R_out), as in every composite."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.lrp.graph import Node
from service.lrp.ops.spec import NUMBER, Attr, AttrType, OpDef, Site, UnsupportedCallError, choice
from service.lrp.ops.structure import pass_relevance


@dataclass(frozen=True)
class Activation:
    """One element-wise function: its call with the node's options, the options with their types in the function's
    argument order (each read from a module attribute or a call argument of the same name), and whether its output
    is never negative."""

    function: Callable[..., torch.Tensor]
    options: tuple[tuple[str, AttrType], ...] = ()
    nonnegative: bool = False


GELU_APPROXIMATIONS = AttrType("'none' or 'tanh'", lambda v: v in ("none", "tanh"))
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(F.relu, nonnegative=True),
    "relu6": Activation(F.relu6, nonnegative=True),
    "leaky_relu": Activation(F.leaky_relu, (("negative_slope", NUMBER),)),
    "elu": Activation(F.elu, (("alpha", NUMBER),)),
    "celu": Activation(F.celu, (("alpha", NUMBER),)),
    "gelu": Activation(F.gelu, (("approximate", GELU_APPROXIMATIONS),)),
    "silu": Activation(F.silu),
    "tanh": Activation(torch.tanh),
    "sigmoid": Activation(torch.sigmoid, nonnegative=True),
    "softplus": Activation(F.softplus, (("beta", NUMBER), ("threshold", NUMBER)), nonnegative=True),
    "selu": Activation(F.selu),
    "mish": Activation(F.mish),
    "hardswish": Activation(F.hardswish),
    "hardsigmoid": Activation(F.hardsigmoid, nonnegative=True),
    "hardtanh": Activation(F.hardtanh, (("min_val", NUMBER), ("max_val", NUMBER))),
}


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    options = {k: v for k, v in node.attrs.items() if k != "fn"}
    return ACTIVATIONS[node.attrs["fn"]].function(args[0], **options), None


def _options(attrs: Mapping[str, Any]) -> tuple[Attr, ...]:
    found = ACTIVATIONS.get(attrs.get("fn", ""))
    return tuple(Attr(name, kind, required=False) for name, kind in found.options) if found else ()


def _reader(fn: str) -> Callable[[Site], tuple[list[Any], dict[str, Any]]]:
    """Read an activation call: the input tensor, and each option from the module or the call's arguments."""

    def read(site: Site) -> tuple[list[Any], dict[str, Any]]:
        attrs: dict[str, Any] = {"fn": fn}
        for position, (name, kind) in enumerate(ACTIVATIONS[fn].options, start=1):
            value = getattr(site.module, name) if site.module is not None else site.arg(position, name)
            if value is not None:
                value = float(value) if kind is NUMBER else value
                if not kind.check(value):
                    raise UnsupportedCallError(f"{fn} with {name}={value!r} (must be {kind.description})")
                attrs[name] = value
        return [site.arg(0, "input")], attrs

    return read


_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.CELU: "celu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Softplus: "softplus", nn.SELU: "selu", nn.Mish: "mish",
    nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Hardtanh: "hardtanh",
}
_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.gelu: "gelu", F.silu: "silu", torch.tanh: "tanh",
    F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.leaky_relu: "leaky_relu", F.elu: "elu",
    F.softplus: "softplus", F.selu: "selu", F.mish: "mish", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
}
_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}

ACTIVATION = OpDef(
    "activation", "element-wise activations", _forward, pass_relevance, fixed_rule="pass",
    attrs=(Attr("fn", choice(list(ACTIVATIONS))),), dependent_attrs=_options,
    nonnegative=lambda node: ACTIVATIONS[node.attrs["fn"]].nonnegative,
    modules={kind: _reader(fn) for kind, fn in _MODULES.items()},
    functions={function: _reader(fn) for function, fn in _FUNCTIONS.items()},
    methods={method: _reader(fn) for method, fn in _METHODS.items()})
