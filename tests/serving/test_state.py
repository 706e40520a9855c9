import asyncio
import dataclasses
import threading

import pytest
import torch
from fastapi.testclient import TestClient

from service import inference
from service.api.app import create_app
from service.inference import PREDICT
from service.loader import load as loader_load
from service.runtime import state as service_state
from service.runtime.state import ServiceState
from service.serving.cpu_threads import TORCH_DEFAULT_THREADS
from service.settings import Settings
from tests.conftest import MODELS
from tests.support.live import wait_until


def _passes(entry, key, samples):
    """A batch function that answers, per sample, the model and the torch thread count it ran on."""
    return [(entry.name, torch.get_num_threads())] * len(samples)


def test_a_model_s_batcher_runs_under_its_serving_limits(registry):
    state = ServiceState(Settings(), _passes, registry)
    digits = registry.get("digits")
    own = dataclasses.replace(digits, name="own", serving=dataclasses.replace(digits.serving, max_batch_size=4))
    try:
        assert state.batcher(own).settings is own.serving
        assert state.batcher(digits).settings is digits.serving
        assert state.batcher(digits) is state.batcher(digits)
    finally:
        state.close()


def test_each_model_s_batches_run_on_its_own_cpu_thread_count(registry):
    state = ServiceState(Settings(), _passes, registry)
    digits = registry.get("digits")
    three, two = (dataclasses.replace(digits, name=name, serving=dataclasses.replace(digits.serving, cpu_threads=n))
                  for name, n in (("three", 3), ("two", 2)))

    async def one_pass_each() -> list[object]:
        try:
            return [(await state.batcher(entry).submit(PREDICT, [None]))[0] for entry in (three, two, digits, three)]
        finally:
            state.close()

    try:
        assert asyncio.run(one_pass_each()) == [("three", 3), ("two", 2), ("digits", 1), ("three", 3)]
    finally:
        torch.set_num_threads(TORCH_DEFAULT_THREADS)  # new threads start from the last count set anywhere


@pytest.mark.slow
def test_loading_warm_up_and_every_model_s_batches_run_on_the_one_device_thread(monkeypatch):
    threads: dict[str, set[str]] = {"load": set(), "batch": set()}
    real_load, real_batch = loader_load.load_entry, inference.run_batch

    def load_entry(*args, **kwargs):
        threads["load"].add(threading.current_thread().name)
        return real_load(*args, **kwargs)

    def run_batch(*args, **kwargs):
        threads["batch"].add(threading.current_thread().name)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(loader_load, "load_entry", load_entry)
    monkeypatch.setattr(inference, "run_batch", run_batch)
    with TestClient(create_app(Settings(models_dir=MODELS))) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200)
        assert client.post("/predict/walkthrough", json={"inputs": [[1.0, 0.5, 0.25]]}).status_code == 200
        assert client.post("/explain/digits", json={"inputs": [[[0] * 8] * 8]}).status_code == 200
    assert len(threads["load"]) == 1 and threads["load"] == threads["batch"]
    assert next(iter(threads["load"])).startswith("device")


def test_the_heap_is_frozen_once_the_models_are_loaded_and_before_readiness(monkeypatch):
    state = ServiceState(Settings(models_dir=MODELS), _passes)
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
