"""The form fields of the upload routes, parsed: a target, a composite (name or JSON rule map), LRP parameters."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from service.api.schemas import LRPParamsBody, SeveralClassesBody
from service.errors import InvalidInputError, describe_validation_errors


def form_target(target: str) -> int | str | SeveralClassesBody | None:
    """A class index, a class label, several classes as JSON (`{"classes": [...]}`), or None (empty or "null": the
    predicted class)."""
    if target.strip() in ("", "null"):
        return None
    text = target.strip()
    if text.startswith("{"):
        try:
            return SeveralClassesBody.model_validate_json(text)
        except ValidationError as problem:
            details = describe_validation_errors(problem.errors(), whole="target")
            raise InvalidInputError(f"target: several classes are written {{\"classes\": [0, 2]}}: {details}") \
                from None
    return int(text) if re.fullmatch(r"-?[0-9]{1,18}", text) else text  # anything else is a label (checked later)


def form_composite(composite: str) -> str | dict[str, Any] | None:
    """A composite name, a rule map written as a JSON object, or None (empty: the model's default)."""
    if not composite.strip():
        return None
    text = composite.strip()
    if not text.startswith("{"):
        return text
    try:
        rule_map = json.loads(text)
    except json.JSONDecodeError as problem:
        raise InvalidInputError(f"composite: a rule map must be a JSON object ({problem})") from None
    if not isinstance(rule_map, dict):
        raise InvalidInputError("composite: a rule map must be a JSON object")
    return rule_map


def form_params(params: str) -> dict[str, Any]:
    """LRP parameters from a JSON object, checked like the JSON body's `params`."""
    if not params.strip():
        return {}
    try:
        return LRPParamsBody.model_validate_json(params).model_dump(exclude_none=True)
    except ValidationError as problem:
        details = describe_validation_errors(problem.errors(), whole="params")
        raise InvalidInputError(f"params must be a JSON object such as {{\"epsilon\": 0.01}}: {details}") from None
