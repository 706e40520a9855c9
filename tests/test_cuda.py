"""On a CUDA machine the service's answers equal the CPU's (TF32 off); skipped where no GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from service.inference import BatchKey, Sample, run_batch
from service.modality.instances import decode_instances
from service.runtime.state import ServiceState
from service.settings import Settings
from tests.conftest import MODELS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def on_cuda() -> ServiceState:
    state = ServiceState(Settings(models_dir=MODELS, device="cuda"), run_batch)
    state.load()  # also switches TF32 off
    assert state.registry is not None, state.load_error
    return state


@pytest.mark.parametrize("model", ["digits", "residual"])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_gpu_relevance_equals_the_cpu_relevance(on_cuda, registry, model, composite):
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    entry = registry.get(model)
    x = decode_instances(entry.spec.input, load_digits().images[:32].tolist(), 10**6).x
    samples = [Sample(row, i, (i % 10,)) for i, row in enumerate(x)]
    key = BatchKey("explain", entry.prepared.resolve(composite, **entry.default_params(composite)))
    cpu = run_batch(entry, key, samples)
    gpu = run_batch(on_cuda.ready_registry().get(model), key, samples)
    assert on_cuda.ready_registry().get(model).prepared.device.type == "cuda"
    for one, other in zip(cpu, gpu, strict=True):
        scale = max(np.abs(one.relevance).max(), abs(one.logit))
        assert np.abs(other.relevance - one.relevance).max() <= 1e-5 * scale
        assert other.logit == pytest.approx(one.logit, rel=1e-5, abs=1e-6)
