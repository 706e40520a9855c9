"""The Open Inference Protocol with clients nobody here wrote: Triton's HTTP client (`tritonclient.http`) and KServe's
Python SDK REST client (`kserve.InferenceRESTClient`) against a live server, in JSON and in the binary tensor format;
their values equal /predict and /explain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.support.live import start_service, stop

triton = pytest.importorskip("tritonclient.http")
utils = pytest.importorskip("tritonclient.utils")

DIGITS = load_digits().images[:4].astype(np.float32)[:, None]
TEXTS = np.array(["a wonderful, heartfelt film", "boring and predictable"], dtype=object)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Any]]:
    base, process = start_service()
    client = triton.InferenceServerClient(url=base.removeprefix("http://"), connection_timeout=30,
                                          network_timeout=60)
    try:
        yield base, client
    finally:
        client.close()
        stop(process)


def _input(values: np.ndarray, datatype: str, binary: bool) -> Any:
    tensor = triton.InferInput("input", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor


def test_health_and_metadata_through_the_client(server):
    _, client = server
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    metadata = client.get_model_metadata("digits")
    assert metadata["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    version = metadata["versions"][0]
    assert client.is_model_ready("digits", model_version=version)
    assert not client.is_model_ready("digits", model_version="1")
    assert client.get_model_metadata("digits", model_version=version) == metadata


def test_infer_of_the_served_version_through_the_client(server):
    base, client = server
    version = client.get_model_metadata("digits")["versions"][0]
    result = client.infer("digits", [_input(DIGITS, "FP32", True)], model_version=version)
    assert result.get_response()["model_version"] == version
    predicted = httpx2.post(f"{base}/predict/digits", json={"inputs": DIGITS[:, 0].tolist()}).json()["predictions"]
    np.testing.assert_allclose(result.as_numpy("logits"), [p["logits"] for p in predicted], rtol=1e-6)
    with pytest.raises(utils.InferenceServerException, match="has no version '1'"):
        client.infer("digits", [_input(DIGITS, "FP32", True)], model_version="1")


@pytest.mark.parametrize("binary", [True, False])
def test_infer_through_the_client_equals_predict(server, binary):
    base, client = server
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("logits", "probabilities")]
    result = client.infer("digits", [_input(DIGITS, "FP32", binary)], outputs=outputs)
    predicted = httpx2.post(f"{base}/predict/digits", json={"inputs": DIGITS[:, 0].tolist()}).json()["predictions"]
    np.testing.assert_allclose(result.as_numpy("logits"), [p["logits"] for p in predicted], rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("probabilities"), [p["probabilities"] for p in predicted], rtol=1e-5)


def test_explanations_through_the_client_equal_explain(server):
    base, client = server
    result = client.infer("digits", [_input(DIGITS, "FP32", True)], parameters={
        "explain": True, "composite": "epsilon_plus_flat", "target": 2, "params": json.dumps({"epsilon": 0.01})})
    explained = httpx2.post(f"{base}/explain/digits", json={
        "inputs": DIGITS[:, 0].tolist(), "composite": "epsilon_plus_flat", "target": 2,
        "params": {"epsilon": 0.01}}).json()["explanations"]
    np.testing.assert_allclose(result.as_numpy("relevance"), [e["relevance"] for e in explained], rtol=1e-5,
                               atol=1e-7)
    assert result.as_numpy("target").tolist() == [2] * len(DIGITS)


def test_texts_through_the_client(server):
    base, client = server
    result = client.infer("sentiment", [_input(TEXTS, "BYTES", True)], parameters={"explain": True})
    explained = httpx2.post(f"{base}/explain/sentiment", json={"inputs": TEXTS.tolist()}).json()["explanations"]
    relevance = result.as_numpy("relevance")
    for row, one in zip(relevance, explained, strict=True):
        np.testing.assert_allclose(row[:len(one["relevance"])], one["relevance"], rtol=1e-5, atol=1e-7)
    assert result.as_numpy("target").tolist() == [e["target"] for e in explained]


def test_the_client_sees_the_service_s_errors(server):
    _, client = server
    with pytest.raises(utils.InferenceServerException) as missing:
        client.infer("nope", [_input(DIGITS, "FP32", True)])
    assert missing.value.status() == "404" and "no model named 'nope'" in missing.value.message()
    with pytest.raises(utils.InferenceServerException) as wrong:
        client.infer("digits", [_input(DIGITS[:, :, :4], "FP32", False)])
    assert wrong.value.status() == "400" and "must be numbers of shape [n, 1, 8, 8]" in wrong.value.message()


@pytest.mark.parametrize("binary", [True, False])
def test_kserve_s_rest_client_gets_what_explain_gives(server, binary):
    kserve = pytest.importorskip("kserve")
    base, _ = server

    async def ask() -> tuple[Any, bool]:
        client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", timeout=30))
        try:
            tensor = kserve.InferInput(name="input", shape=list(DIGITS.shape), datatype="FP32")
            tensor.set_data_from_numpy(DIGITS, binary_data=binary)
            request = kserve.InferRequest(model_name="digits", infer_inputs=[tensor], parameters={
                "explain": True, "composite": "epsilon", "params": json.dumps({"epsilon": 0.1}), "target": 5})
            answer = await client.infer(base, request, model_name="digits")
            return answer, await client.is_model_ready(base, "digits")
        finally:
            await client.close()

    answer, ready = asyncio.run(ask())
    outputs = {output.name: output.as_numpy() for output in answer.outputs}
    explained = httpx2.post(f"{base}/explain/digits", json={
        "inputs": DIGITS[:, 0].tolist(), "composite": "epsilon", "target": 5,
        "params": {"epsilon": 0.1}}).json()["explanations"]
    assert ready
    np.testing.assert_allclose(outputs["relevance"], [e["relevance"] for e in explained], rtol=1e-5, atol=1e-7)
    assert outputs["target"].tolist() == [5] * len(DIGITS)
    np.testing.assert_allclose(outputs["logits"][:, 5], [e["logit"] for e in explained], rtol=1e-6)
