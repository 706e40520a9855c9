import json
import math

import numpy as np
import pytest
from fastapi.routing import APIRoute

from service.api import fast_json
from service.api.fast_json import FastJSONResponse, FastJSONRoute, parse_json
from service.api.rest.routes import router


def test_float32_arrays_read_back_exactly_and_other_values_as_json():
    rng = np.random.default_rng(0)
    relevance = (rng.standard_normal((3, 4, 5)) * 10.0 ** rng.integers(-8, 4, (3, 4, 5))).astype(np.float32)
    body = FastJSONResponse({"relevance": relevance, "label": "7", "logit": 1.25, "ok": True}).body
    parsed = json.loads(bytes(body))
    np.testing.assert_array_equal(np.asarray(parsed["relevance"], dtype=np.float32), relevance)
    assert (parsed["label"], parsed["logit"], parsed["ok"]) == ("7", 1.25, True)


def test_float32_values_use_their_own_shortest_digits():
    body = FastJSONResponse({"r": np.array([0.1, 1 / 3], dtype=np.float32)}).body
    assert body == b'{"r":[0.1,0.33333334]}'  # float64 repr would write 0.10000000149011612 and 0.3333333432674408


def test_bodies_parse_to_what_the_standard_parser_reads():
    rng = np.random.default_rng(1)
    values = (rng.standard_normal(500) * 10.0 ** rng.integers(-30, 30, 500)).tolist()
    body = json.dumps({"inputs": [values], "target": 3, "composite": "epsilon_plus", "label": "é\u2603"}).encode()
    assert parse_json(body) == json.loads(body)  # same floats, bit for bit (both round correctly)


def test_nan_and_infinity_literals_still_parse_so_that_validation_can_name_them():
    parsed = parse_json(b'{"inputs": [[NaN, Infinity, -Infinity, 1]]}')
    assert np.isnan(parsed["inputs"][0][0]) and parsed["inputs"][0][1:] == [math.inf, -math.inf, 1]


def test_malformed_bodies_raise_the_standard_decode_error():
    with pytest.raises(json.JSONDecodeError) as caught:
        parse_json(b'{"inputs": [[1, 2,')
    assert type(caught.value) is json.JSONDecodeError  # FastAPI turns exactly this into its 422


def test_every_api_route_reads_its_body_through_parse_json(client, monkeypatch):
    assert all(isinstance(r, FastJSONRoute) for r in router.routes if isinstance(r, APIRoute))
    parsed: list[bytes] = []

    def spy(body: bytes):
        parsed.append(body)
        return parse_json(body)

    monkeypatch.setattr(fast_json, "parse_json", spy)
    bodies = {"predict": b'{"inputs": [[1.0, 0.8, 0.2]]}', "explain": b'{"inputs": [[1.0, 0.8, 0.2]], "target": 0}'}
    for verb, body in bodies.items():
        assert client.post(f"/{verb}/walkthrough", content=body, headers={"content-type": "application/json"}
                           ).status_code == 200
    assert parsed == list(bodies.values())
