"""The metrics registry: what each observation adds to the Prometheus text, read back with the reference parser."""

from __future__ import annotations

from service.inference import PREDICT, BatchKey
from service.serving.batcher import BatchRecord, MicroBatcher
from service.serving.config import ServingConfig
from service.serving.metrics import ServiceMetrics
from tests.support.prometheus import Key, labels, parse


def samples(metrics: ServiceMetrics) -> dict[Key, float]:
    return parse(metrics.render().decode())


def test_requests_are_counted_by_model_verb_and_status_with_their_latency():
    metrics = ServiceMetrics(dict)
    metrics.observe_request("digits", "explain", 200, 0.004)
    metrics.observe_request("digits", "explain", 200, 0.2)
    metrics.observe_request("digits", "explain", 422, 0.001)
    found = samples(metrics)
    assert found["lrp_requests_total", labels(model="digits", verb="explain", status="200")] == 2
    assert found["lrp_requests_total", labels(model="digits", verb="explain", status="422")] == 1
    assert found["lrp_request_duration_seconds_count", labels(model="digits", verb="explain")] == 3
    assert abs(found["lrp_request_duration_seconds_sum", labels(model="digits", verb="explain")] - 0.205) < 1e-12
    assert found["lrp_request_duration_seconds_bucket", labels(model="digits", verb="explain", le="0.005")] == 2


def test_a_batch_adds_its_size_run_time_and_every_sample_wait(registry):
    metrics = ServiceMetrics(dict)
    observe = metrics.batch_observer("digits")
    method = registry.get("digits").prepared.resolve("epsilon")
    observe(BatchRecord(BatchKey("explain", method), [0.001, 0.003, 0.02], 0.05))
    observe(BatchRecord(PREDICT, [0.0], 0.002))
    found = samples(metrics)
    explain = labels(model="digits", verb="explain")
    assert found["lrp_batch_size_count", explain] == 1 and found["lrp_batch_size_sum", explain] == 3
    assert found["lrp_batch_size_bucket", labels(model="digits", verb="explain", le="2.0")] == 0
    assert found["lrp_batch_size_bucket", labels(model="digits", verb="explain", le="4.0")] == 1
    assert found["lrp_queue_wait_seconds_count", explain] == 3
    assert abs(found["lrp_queue_wait_seconds_sum", explain] - 0.024) < 1e-12
    assert found["lrp_batch_duration_seconds_sum", explain] == 0.05
    assert found["lrp_batch_size_sum", labels(model="digits", verb="predict")] == 1


def test_queue_depth_and_refusals_are_read_from_the_batchers_when_scraped():
    batcher: MicroBatcher[BatchKey, int, int] = MicroBatcher(lambda key, items: items,
                                                             ServingConfig(32, 5.0, 1024, 30.0, 1, 16384))
    metrics = ServiceMetrics(lambda: {"digits": batcher})
    batcher.stats.rejected, batcher.stats.expired, batcher.stats.cancelled = 3, 2, 1
    batcher._queued = 7  # what the queue would hold between batches
    found = samples(metrics)
    assert found["lrp_queue_depth", labels(model="digits")] == 7
    assert found["lrp_rejected_requests_total", labels(model="digits", reason="queue_full")] == 3
    assert found["lrp_rejected_requests_total", labels(model="digits", reason="deadline_exceeded")] == 2
    assert found["lrp_rejected_requests_total", labels(model="digits", reason="client_disconnected")] == 1
    batcher.stats.rejected = 4
    assert samples(metrics)["lrp_rejected_requests_total", labels(model="digits", reason="queue_full")] == 4
    batcher.close()


def test_two_instances_never_share_counts():
    first, second = ServiceMetrics(dict), ServiceMetrics(dict)
    first.observe_request("digits", "predict", 200, 0.01)
    assert ("lrp_requests_total", labels(model="digits", verb="predict", status="200")) not in samples(second)
