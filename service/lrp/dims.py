"""Sizes that follow the input's shape. A captured model's reshape or slice may use the batch size or the number of
tokens; the graph writes such a size as {"expr": "4*d0"}, an integer expression in the input's dimensions d0, d1, ...
(`+ - * //`, FloorDiv, Mod, Max, Min), evaluated for each batch. Everything else in an attribute is a constant."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

EXPR = "expr"
DATA_DEPENDENT = {"data_dependent": True}  # a captured size that follows the input's values: never an attribute
Shape = Sequence[int]
Evaluate = Callable[[Shape], int]

_FUNCTIONS: dict[str, Callable[[int, int], int]] = {
    "FloorDiv": lambda a, b: a // b, "Mod": lambda a, b: a % b, "Max": max, "Min": min,
    "PythonMod": lambda a, b: a % b, "CleanDiv": lambda a, b: a // b}
_OPERATORS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def is_expr(value: object) -> TypeGuard[dict[str, str]]:
    """Whether `value` is a size written as an expression: {"expr": "..."}."""
    return isinstance(value, dict) and set(value) == {EXPR} and isinstance(value[EXPR], str)


def compile_expr(text: str) -> Evaluate:
    """The function of the input's shape that `text` denotes; ValueError for anything but the grammar above."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"size expression {text!r} is not an expression") from None
    return _compile(tree, text)


def _compile(node: ast.expr, text: str) -> Evaluate:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        number = node.value
        return lambda shape: number
    if isinstance(node, ast.Name) and node.id[:1] == "d" and node.id[1:].isdigit():
        index = int(node.id[1:])
        return lambda shape: int(shape[index])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _compile(node.operand, text)
        return lambda shape: -inner(shape)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        operation, left, right = _OPERATORS[type(node.op)], _compile(node.left, text), _compile(node.right, text)
        return lambda shape: operation(left(shape), right(shape))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and len(node.args) == 2 and not node.keywords):
        function = _FUNCTIONS[node.func.id]
        first, second = _compile(node.args[0], text), _compile(node.args[1], text)
        return lambda shape: function(first(shape), second(shape))
    raise ValueError(f"size expression {text!r}: only integers, d0, d1, ..., + - * // % and "
                     f"{sorted(_FUNCTIONS)} are allowed")


def uses(value: object, dimension: int) -> bool:
    """Whether a size (an int or an expression) depends on the input's dimension `dimension`."""
    if not is_expr(value):
        return False
    return any(isinstance(n, ast.Name) and n.id == f"d{dimension}" for n in ast.walk(ast.parse(value[EXPR])))


def has_exprs(value: object) -> bool:
    """Whether an attribute value holds a size expression anywhere."""
    if is_expr(value):
        return True
    if isinstance(value, Mapping):
        return any(has_exprs(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_exprs(v) for v in value)
    return False


def binder(value: object) -> Callable[[Shape], Any]:
    """A function of the input's shape returning `value` with every size expression evaluated."""
    if is_expr(value):
        return compile_expr(value[EXPR])
    if isinstance(value, Mapping):
        parts = {k: binder(v) for k, v in value.items()}
        return lambda shape: {k: part(shape) for k, part in parts.items()}
    if isinstance(value, list | tuple):
        items = [binder(v) for v in value]
        kind = type(value)
        return lambda shape: kind(item(shape) for item in items)
    return lambda shape: value


def check(value: object) -> None:
    """Raise ValueError if any size expression in `value` is outside the grammar."""
    if is_expr(value):
        compile_expr(value[EXPR])
    elif isinstance(value, Mapping):
        for v in value.values():
            check(v)
    elif isinstance(value, list | tuple):
        for v in value:
            check(v)


def holds_data_dependent(value: object) -> bool:
    """Whether DATA_DEPENDENT is anywhere in `value` (nested lists and dicts)."""
    if value is DATA_DEPENDENT:
        return True
    if isinstance(value, dict):
        return any(holds_data_dependent(v) for v in value.values())
    return isinstance(value, list | tuple) and any(holds_data_dependent(v) for v in value)
