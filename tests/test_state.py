import dataclasses

from service.batching import BatchSettings
from service.config import Settings
from service.model_format import BatchingSpec
from service.state import ServiceState


def test_batchers_take_the_model_s_limits_over_the_service_settings(registry):
    state = ServiceState(Settings(max_batch_size=32, max_delay_ms=5, max_queue=100, request_timeout_s=30), registry)
    digits = registry.get("digits")
    own = dataclasses.replace(digits, name="own", spec=digits.spec.model_copy(
        update={"batching": BatchingSpec(max_batch_size=4, max_delay_ms=0, timeout_s=2.5)}))
    try:
        assert state.batcher(own).settings == BatchSettings(
            max_batch_size=4, max_delay_ms=0.0, max_queue=100, timeout_s=2.5)
        assert state.batcher(digits).settings == BatchSettings(
            max_batch_size=32, max_delay_ms=5.0, max_queue=100, timeout_s=30.0)
        assert state.batcher(digits) is state.batcher(digits)
    finally:
        state.close()
