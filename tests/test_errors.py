from typing import Any

from service.errors import describe_validation_errors

ERRORS: list[dict[str, Any]] = [
    {"loc": ("body", "inputs"), "msg": "Field required"}, {"loc": (), "msg": "Bad document"},
    {"loc": ("params", "epsilon", 0), "msg": "not a number"}]


def test_locations_are_dotted_with_a_name_for_the_whole_and_the_skipped_part_left_out():
    assert describe_validation_errors(ERRORS, whole="body", skip="body") == (
        "inputs: Field required; body: Bad document; params.epsilon.0: not a number")


def test_errors_past_the_limit_are_counted():
    assert describe_validation_errors(ERRORS, whole="(top level)", limit=1) == (
        "body.inputs: Field required; and 2 more")
