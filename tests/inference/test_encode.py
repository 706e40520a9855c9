import numpy as np
import pytest

from service.api.rest.codec import ranked_features


def test_ranked_features_order_by_magnitude():
    ranked = ranked_features(["a", "b", "c"], np.array([0.1, -0.9, 0.5]), [1.0, 2.0, 3.0])
    assert [(f.name, f.value) for f in ranked] == [("b", 2.0), ("c", 3.0), ("a", 1.0)]
    assert [f.relevance for f in ranked] == pytest.approx([-0.9, 0.5, 0.1])
