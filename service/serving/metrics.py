"""Prometheus metrics of one service instance: requests, latencies, batch sizes, queue depth and waits, refusals.

Each instance owns its own `CollectorRegistry`, so several apps in one process (the tests) never share counts.
Queue depth and refusals are read from the batchers' own counters when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.serving.batcher import BatchKey, BatchRecord, BatchStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Queue(Protocol):
    """What the metrics read of a model's batcher: the inputs waiting and the requests it refused."""

    @property
    def queued(self) -> int: ...

    @property
    def stats(self) -> BatchStats: ...


Queues = Callable[[], Mapping[str, Queue]]  # each served model's batcher, by model name


class _BatcherCollector(Collector):
    """Queue depth per model and refused requests per model and reason, read from the live batchers."""

    def __init__(self, batchers: Queues) -> None:
        self._batchers = batchers

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("lrp_queue_depth", "Inputs waiting in the model's queue (not yet running)",
                                  labels=["model"])
        refused = CounterMetricFamily(
            "lrp_rejected_requests", "Requests not run: queue_full (503), deadline_exceeded (504) or "
            "client_disconnected (the client went away while queued)", labels=["model", "reason"])
        for model, batcher in sorted(self._batchers().items()):
            depth.add_metric([model], batcher.queued)
            refused.add_metric([model, "queue_full"], batcher.stats.rejected)
            refused.add_metric([model, "deadline_exceeded"], batcher.stats.expired)
            refused.add_metric([model, "client_disconnected"], batcher.stats.cancelled)
        yield depth
        yield refused


class ServiceMetrics:
    """The service's metrics; `render()` gives the Prometheus text exposition."""

    def __init__(self, batchers: Queues) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lrp_requests", "Finished /predict and /explain requests by HTTP status",
                                ["model", "verb", "status"], registry=self.registry)
        self.latency = Histogram("lrp_request_duration_seconds", "Time from request to response",
                                 ["model", "verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("lrp_batch_size", "Inputs per batched pass", ["model", "verb"],
                                    buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("lrp_batch_duration_seconds", "Run time of one batched pass",
                                       ["model", "verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("lrp_queue_wait_seconds", "Time an input waited in the queue before its pass",
                                    ["model", "verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_changes = Counter("lrp_model_changes", "Models loaded, replaced or deleted at run time, and the "
                                     "attempts refused (invalid upload, no or wrong token)",
                                     ["model", "operation", "outcome"], registry=self.registry)
        self.registry.register(_BatcherCollector(batchers))

    def observe_request(self, model: str, verb: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self.requests.labels(model, verb, str(status)).inc()
        self.latency.labels(model, verb).observe(seconds)

    def model_change(self, model: str, operation: str, outcome: str) -> None:
        """Count one model-management operation: put, load, replace or delete; done, refused, unauthorized or
        forbidden."""
        self.model_changes.labels(model, operation, outcome).inc()

    def batch_observer(self, model: str) -> Callable[[BatchRecord[BatchKey]], None]:
        """The `on_batch` callback for a model's batcher; the batch key's `verb` is the metric's label."""

        def observe(record: BatchRecord[BatchKey]) -> None:
            verb = record.key.verb
            self.batch_size.labels(model, verb).observe(record.size)
            self.batch_seconds.labels(model, verb).observe(record.run_seconds)
            waits = self.queue_wait.labels(model, verb)
            for wait in record.queue_waits:
                waits.observe(wait)

        return observe

    def render(self) -> bytes:
        """The text exposition format (content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
