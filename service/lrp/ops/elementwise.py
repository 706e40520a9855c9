"""Element-wise arithmetic of two tensors, or of a tensor and a number (AttnLRP, Achtibat et al. 2024).

- a + alpha b (residuals; a - b is alpha = -1): R_a = a * R / stab(a + alpha b), R_b = alpha b * R / stab(...);
  an addend that carries no relevance (a parameter, a constant, a mask) absorbs its share like a bias.
- a * b (gating, Prop. 3.2): each factor that carries relevance gets R / n, n the number of such factors; a factor
  that is a constant, a parameter or a normalising factor (1/sigma) passes R on whole. a / b likewise.
- x op c with a number c: scaling (* and /) passes R on; shifting (+, -) is the epsilon rule with c as the bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeGuard

import torch

from service.lrp.graph import Node
from service.lrp.ops.spec import (
    NUMBER,
    BackwardCall,
    OpDef,
    Read,
    Reader,
    Ref,
    Site,
    UnsupportedCallError,
    attrs_of,
    choice,
)
from service.lrp.stabilize import divide

aten = torch.ops.aten
SCALAR_NAME = "scalar"
_SCALAR_FUNCTIONS = {
    "add": lambda x, c: aten.add.Tensor(x, c), "sub": lambda x, c: aten.sub.Tensor(x, c),
    "rsub": lambda x, c: aten.rsub.Scalar(x, c), "mul": lambda x, c: aten.mul.Tensor(x, c),
    "div": lambda x, c: aten.div.Tensor(x, c)}


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(fn: str, x: Ref, other: object) -> Read:
    if not _number(other):
        raise UnsupportedCallError(f"{fn} with a {type(other).__name__} operand")
    return Read([x], {"fn": fn, "other": other}, op=SCALAR_NAME)


def _arithmetic(fn: str, tensor_op: str) -> Reader:
    """Read a + b, a - b, a * b, a / b: two tensors become `tensor_op`, a tensor and a number the scalar op."""

    def read(site: Site) -> Read:
        x, other = site.tensor("self"), site.args.get("other")
        if not isinstance(other, Ref):
            if site.arg("alpha", 1) != 1:
                raise UnsupportedCallError(f"{fn} of a number with alpha != 1")
            return _scalar(fn, x, other)
        alpha = site.arg("alpha", 1)
        if not _number(alpha):
            raise UnsupportedCallError(f"{fn} with a non-numeric alpha")
        if fn == "sub":
            alpha = -alpha
        return Read([x, other], {"alpha": alpha} if alpha != 1 else {}, op=tensor_op)

    return read


def _rsub(site: Site) -> Read:
    if site.arg("alpha", 1) != 1:
        raise UnsupportedCallError("rsub with alpha != 1")
    return _scalar("rsub", site.tensor("self"), site.args.get("other"))


@dataclass(frozen=True)
class AddAttrs:
    """a + alpha b (a - b: alpha -1)."""

    alpha: Annotated[float, NUMBER] = 1


@dataclass(frozen=True)
class ScalarAttrs:
    """A tensor and a number: x + c, x * c, x / c or c - x (`fn`: add, mul, div, rsub)."""

    fn: Annotated[str, choice(["add", "mul", "div", "rsub"])]
    other: Annotated[float, NUMBER]


def _add(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    return torch.add(args[0], args[1], alpha=node.typed(AddAttrs).alpha), None


def _scalar_forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    a = node.typed(ScalarAttrs)
    return _SCALAR_FUNCTIONS[a.fn](args[0], a.other), None


def _add_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_a = a * R / stab(a + alpha b), R_b = alpha b * R / stab(a + alpha b), summed over broadcast dimensions."""
    s = divide(call.relevance, call.out, call.stabilizer)
    alpha = call.node.typed(AddAttrs).alpha
    terms = (call.args[0], call.args[1] * alpha if alpha != 1 else call.args[1])
    return [(term * s).sum_to_size(arg.shape) if live else None
            for term, arg, live in zip(terms, call.args, call.live, strict=True)]


def _product_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """Each factor that carries relevance gets R / n (n of them), summed over broadcast dimensions."""
    share = call.relevance / max(sum(call.live), 1)
    return [share.sum_to_size(arg.shape) if live else None for arg, live in zip(call.args, call.live, strict=True)]


def _scalar_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """x * c, x / c: R passes on; x + c, x - c, c - x: R_x = (+-x) * R / stab(out), c absorbs its share."""
    fn = call.node.typed(ScalarAttrs).fn
    if fn in ("mul", "div"):
        return [call.relevance]
    x = -call.args[0] if fn == "rsub" else call.args[0]
    return [x * divide(call.relevance, call.out, call.stabilizer)]


ADD = OpDef("add", "tensor + tensor, tensor - tensor", _add, _add_back, fixed_rule="norm (epsilon)", inputs=2,
            keeps_sign=True, attrs=attrs_of(AddAttrs),
    aten={aten.add.Tensor: _arithmetic("add", "add"), aten.add_.Tensor: _arithmetic("add", "add"),
          aten.sub.Tensor: _arithmetic("sub", "add"), aten.sub_.Tensor: _arithmetic("sub", "add")})
MUL = OpDef("mul", "tensor * tensor", lambda node, args: (args[0] * args[1], None), _product_back,
            fixed_rule="uniform (R / factors)", inputs=2, keeps_sign=True,
            aten={aten.mul.Tensor: _arithmetic("mul", "mul"), aten.mul_.Tensor: _arithmetic("mul", "mul")})
DIV = OpDef("div", "tensor / tensor", lambda node, args: (args[0] / args[1], None), _product_back,
            fixed_rule="uniform (R / factors)", inputs=2, keeps_sign=True,
            aten={aten.div.Tensor: _arithmetic("div", "div"), aten.div_.Tensor: _arithmetic("div", "div")})
SCALAR = OpDef(SCALAR_NAME, "tensor and a number (+ - * /)", _scalar_forward, _scalar_back,
    fixed_rule="pass (* /), epsilon (+ -)", attrs=attrs_of(ScalarAttrs),
    aten={aten.rsub.Scalar: _rsub, aten.mul.Scalar: lambda site: _scalar("mul", site.tensor("self"),
                                                                           site.args.get("other")),
          aten.div.Scalar: lambda site: _scalar("div", site.tensor("self"), site.args.get("other")),
          aten.add.Scalar: lambda site: _scalar("add", site.tensor("self"), site.args.get("other"))})
ELEMENTWISE = (ADD, MUL, DIV, SCALAR)
