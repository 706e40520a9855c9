"""Element-wise functions of one tensor: one op, `activation`, whose `fn` attribute picks the function. Relevance
passes through unchanged (R_in = R_out), as in every composite (AttnLRP's identity rule for GELU, SiLU, tanh).
sqrt, rsqrt and reciprocal are normalising factors: where one scales an activation, it is held constant."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import NUMBER, Attr, AttrType, OpDef, Read, Reader, Site, UnsupportedCallError, choice
from service.lrp.ops.structure import pass_relevance

aten = torch.ops.aten


@dataclass(frozen=True)
class Activation:
    """One element-wise function: its call with the node's options, the options with their types in the function's
    argument order (each read from a module attribute or a call argument of the same name), and whether its output
    is never negative."""

    function: Callable[..., torch.Tensor]
    options: tuple[tuple[str, AttrType], ...] = ()
    nonnegative: bool = False
    normalizer: bool = False  # a normalising factor (1/sigma): held constant where it scales an activation


GELU_APPROXIMATIONS = AttrType("'none' or 'tanh'", lambda v: v in ("none", "tanh"))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x sigmoid(1.702 x): Hugging Face's QuickGELUActivation (CLIP), met only as a fused module call."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(F.relu, nonnegative=True),
    "relu6": Activation(F.relu6, nonnegative=True),
    "leaky_relu": Activation(F.leaky_relu, (("negative_slope", NUMBER),)),
    "elu": Activation(F.elu, (("alpha", NUMBER),)),
    "celu": Activation(F.celu, (("alpha", NUMBER),)),
    "gelu": Activation(F.gelu, (("approximate", GELU_APPROXIMATIONS),)),
    "silu": Activation(F.silu),
    "quick_gelu": Activation(quick_gelu),
    "tanh": Activation(torch.tanh),
    "sigmoid": Activation(torch.sigmoid, nonnegative=True),
    "softplus": Activation(F.softplus, (("beta", NUMBER), ("threshold", NUMBER)), nonnegative=True),
    "selu": Activation(F.selu),
    "mish": Activation(F.mish),
    "hardswish": Activation(F.hardswish),
    "hardsigmoid": Activation(F.hardsigmoid, nonnegative=True),
    "hardtanh": Activation(F.hardtanh, (("min_val", NUMBER), ("max_val", NUMBER))),
    "neg": Activation(torch.neg),
    "abs": Activation(torch.abs, nonnegative=True),
    "exp": Activation(torch.exp, nonnegative=True),
    "log": Activation(torch.log),
    "erf": Activation(torch.erf),
    "sin": Activation(torch.sin),
    "cos": Activation(torch.cos),
    "pow": Activation(torch.pow, (("exponent", NUMBER),)),
    "clamp_min": Activation(torch.clamp_min, (("min", NUMBER),)),
    "sqrt": Activation(torch.sqrt, nonnegative=True, normalizer=True),
    "rsqrt": Activation(torch.rsqrt, nonnegative=True, normalizer=True),
    "reciprocal": Activation(torch.reciprocal, normalizer=True),
}


def activation_of(node: Node) -> Activation:
    """The function an activation node applies (its `fn`, checked against ACTIVATIONS when the node was read)."""
    return ACTIVATIONS[str(node.attrs["fn"])]


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    options = {k: v for k, v in node.attrs.items() if k != "fn"}  # the function's own keywords (Activation.options)
    return activation_of(node).function(args[0], **options), None


def _options(attrs: Mapping[str, Any]) -> tuple[Attr, ...]:
    """The options of the activation `fn` names (none for a name that is not a string: `fn` itself is refused)."""
    fn = attrs.get("fn")
    found = ACTIVATIONS.get(fn) if isinstance(fn, str) else None
    return tuple(Attr(name, kind, required=False) for name, kind in found.options) if found else ()


def _reader(fn: str) -> Reader:
    """Read an activation call: the input tensor, and each option from the call's arguments."""

    def read(site: Site) -> Read:
        attrs: dict[str, Any] = {"fn": fn}
        for name, kind in ACTIVATIONS[fn].options:
            value = site.arg(name)
            if value is not None:
                value = float(value) if kind is NUMBER and isinstance(value, int | float) else value
                if not kind.check(value):
                    raise UnsupportedCallError(f"{fn} with {name}={value!r} (must be {kind.description})")
                attrs[name] = value
        return Read([site.tensor("self")], attrs)

    return read


def _elu(site: Site) -> Read:
    if site.arg("scale", 1) != 1 or site.arg("input_scale", 1) != 1:
        raise UnsupportedCallError("elu with scale or input_scale other than 1")
    return _reader("elu")(site)


def _relu6(site: Site) -> Read:
    return Read([site.tensor("self")], {"fn": "relu6"})


_CALLS: dict[str, tuple[Any, ...]] = {
    "relu": (aten.relu.default, aten.relu_.default), "leaky_relu": (aten.leaky_relu.default, aten.leaky_relu_.default),
    "celu": (aten.celu.default, aten.celu_.default), "gelu": (aten.gelu.default, aten.gelu_.default),
    "silu": (aten.silu.default, aten.silu_.default), "tanh": (aten.tanh.default, aten.tanh_.default),
    "sigmoid": (aten.sigmoid.default, aten.sigmoid_.default), "softplus": (aten.softplus.default,),
    "selu": (aten.selu.default, aten.selu_.default), "mish": (aten.mish.default, aten.mish_.default),
    "hardswish": (aten.hardswish.default, aten.hardswish_.default),
    "hardsigmoid": (aten.hardsigmoid.default, aten.hardsigmoid_.default),
    "hardtanh": (aten.hardtanh.default, aten.hardtanh_.default), "neg": (aten.neg.default,),
    "abs": (aten.abs.default,), "exp": (aten.exp.default,), "log": (aten.log.default,), "erf": (aten.erf.default,),
    "sin": (aten.sin.default,), "cos": (aten.cos.default,), "pow": (aten.pow.Tensor_Scalar,),
    "clamp_min": (aten.clamp_min.default,), "sqrt": (aten.sqrt.default,), "rsqrt": (aten.rsqrt.default,),
    "reciprocal": (aten.reciprocal.default,)}
_READERS: dict[Any, Reader] = {call: _reader(fn) for fn, calls in _CALLS.items() for call in calls}
_READERS |= {aten.elu.default: _elu, aten.elu_.default: _elu, aten.relu6.default: _relu6}


def is_normalizer(node: Node) -> bool:
    """Whether the node computes a normalising factor (sqrt, rsqrt, reciprocal of an activation)."""
    return node.op == ACTIVATION.name and activation_of(node).normalizer


ACTIVATION = OpDef(
    "activation", "element-wise functions (ReLU, GELU, SiLU, tanh, exp, sqrt, ...)", _forward, pass_relevance,
    fixed_rule="pass", attrs=(Attr("fn", choice(list(ACTIVATIONS))),), dependent_attrs=_options,
    nonnegative=lambda node: activation_of(node).nonnegative, aten=_READERS)
