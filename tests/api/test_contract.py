"""Schemathesis against a live server: no 5xx, every status documented, every body matching its schema and its
content type as documented, for generated requests to every operation (bounded: 100 examples per operation, a
few seconds in all)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.live import start_service, stop

EXAMPLES = 100
# The contract: no server error, a documented status, a body matching its schema, a documented content type.
# (Not "every schema-valid request is accepted": an instance's shape depends on the model, which JSON Schema in
# the document cannot tie to the path, so a request the schema allows can still be refused with a 422.)
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.mark.slow
def test_every_operation_keeps_its_contract() -> None:
    base, process = start_service(LRP_MAX_INSTANCES="4", LRP_MAX_BODY_BYTES="1000000",
                                  LRP_MAX_UPLOAD_BYTES="900000")
    failures: dict[str, str] = {}
    try:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def keeps_its_contract(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)

            try:
                keeps_its_contract()
            except (Exception, BaseExceptionGroup) as failure:  # every operation's failures, reported together
                parts = failure.exceptions if isinstance(failure, BaseExceptionGroup) else [failure]
                failures[operation.label] = "\n".join(str(part)[:3000] for part in parts)
    finally:
        stop(process)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
