import json

import numpy as np

from service.api.fast_json import FastJSONResponse


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
