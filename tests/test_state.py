import asyncio
import dataclasses
import threading

import torch
from fastapi.testclient import TestClient

from service import inference, registry
from service import state as service_state
from service.app import create_app
from service.batching import BatchSettings
from service.config import Settings
from service.cpu_threads import TORCH_DEFAULT_THREADS
from service.model_format import BatchingSpec
from service.state import ServiceState
from tests.conftest import MODELS
from tests.live import wait_until


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


def test_each_model_s_batches_run_on_its_own_cpu_thread_count(registry, monkeypatch):
    monkeypatch.setattr(inference, "run_batch", lambda entry, key, samples: [
        (entry.name, torch.get_num_threads())] * len(samples))
    state = ServiceState(Settings(cpu_threads=3), registry)
    digits = registry.get("digits")
    spec = digits.spec.model_copy(update={"batching": None})
    inherits = dataclasses.replace(digits, name="inherits", spec=spec)
    own = dataclasses.replace(digits, name="own",
                              spec=spec.model_copy(update={"batching": BatchingSpec(cpu_threads=2)}))

    async def one_pass_each() -> list[object]:
        try:
            return [(await state.batcher(entry).submit(("predict",), [None]))[0]
                    for entry in (inherits, own, digits, inherits)]
        finally:
            state.close()

    try:
        assert asyncio.run(one_pass_each()) == [("inherits", 3), ("own", 2), ("digits", 1), ("inherits", 3)]
    finally:
        torch.set_num_threads(TORCH_DEFAULT_THREADS)  # new threads start from the last count set anywhere


def test_loading_warm_up_and_every_model_s_batches_run_on_the_one_device_thread(monkeypatch):
    threads: dict[str, set[str]] = {"load": set(), "batch": set()}
    real_load, real_batch = registry.load_entry, inference.run_batch

    def load_entry(*args, **kwargs):
        threads["load"].add(threading.current_thread().name)
        return real_load(*args, **kwargs)

    def run_batch(*args, **kwargs):
        threads["batch"].add(threading.current_thread().name)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(registry, "load_entry", load_entry)
    monkeypatch.setattr(inference, "run_batch", run_batch)
    with TestClient(create_app(Settings(models_dir=MODELS))) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200)
        assert client.post("/predict/walkthrough", json={"inputs": [[1.0, 0.5, 0.25]]}).status_code == 200
        assert client.post("/explain/digits", json={"inputs": [[[0] * 8] * 8]}).status_code == 200
    assert len(threads["load"]) == 1 and threads["load"] == threads["batch"]
    assert next(iter(threads["load"])).startswith("device")


def test_the_heap_is_frozen_once_the_models_are_loaded_and_before_readiness(monkeypatch):
    state = ServiceState(Settings(models_dir=MODELS))
    seen: list[bool] = []

    def freeze() -> int:
        seen.append(state.registry is None)
        return 0

    monkeypatch.setattr(service_state, "freeze_long_lived", freeze)
    try:
        state.load()
        assert seen == [True] and state.registry is not None
    finally:
        state.close()
