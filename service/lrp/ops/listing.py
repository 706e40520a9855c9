"""The op table as the README shows it: each op, what it covers, the rule its relevance takes (a composite chooses
it for layer types such as Linear and Conv) and the ATen calls it is captured from. `python -m service op-table` prints
it; a test holds the README's copy equal to it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.lrp.ops import IDENTITY_CALLS, OPS, OpDef
from service.lrp.ops.aten_call import COMPUTED_TARGETS
from service.lrp.ops.structure import IDENTITY_LABEL

HEADER = ("| op | covers | rule | captured from (ATen) |\n"
          "| --- | --- | --- | --- |")


def _calls(calls: Iterable[Any]) -> str:
    names = sorted({str(call).removeprefix("aten.").removesuffix(".default") for call in calls})
    return ", ".join(f"`{name}`" for name in names)


def _rule(definition: OpDef) -> str:
    if definition.layer_type:
        return f"the composite's rule for `{definition.layer_type}` layers"
    return definition.fixed_rule


def rules_table() -> str:
    """Markdown: one row per op of the table, in its order; then the calls that are identities in eval (no node),
    and the calls a constant computation (one that depends on no explained input's values) may use."""
    rows = [f"| `{name}` | {definition.label} | {_rule(definition)} | "
            f"{_calls(definition.aten) or '(made by the capture itself)'} |" for name, definition in OPS.items()]
    rows.append(f"| (none) | {IDENTITY_LABEL} | pass (no node: an identity in eval) | {_calls(IDENTITY_CALLS)} |")
    rows.append(f"| `computed`'s calls | what a constant computation may use | none | {_calls(COMPUTED_TARGETS)} |")
    return "\n".join([HEADER, *rows])
