"""PUT and DELETE /models/{name}: models added, replaced and removed while the service runs, only with the admin
token; refused uploads leave what served under the name serving; a restart serves what was committed."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service import inference
from service.api.app import create_app
from service.loader import load_directory
from service.modality.instances import decode_instances
from service.settings import MULTIPART_MARGIN, Settings
from tests.conftest import MODELS
from tests.support.prometheus import labels, parse

TOKEN = "a-long-enough-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WALKTHROUGH = [[1.0, 0.8, 0.2]]


def _files(name: str, **replaced: bytes) -> dict[str, tuple[str, bytes]]:
    """The multipart files of shipped model `name` (model.json, weights), some replaced by other bytes."""
    folder = MODELS / name
    files = {"model_json": ("model.json", (folder / "model.json").read_bytes()),
             "weights": ("weights.safetensors", (folder / "weights.safetensors").read_bytes())}
    if (folder / "tokenizer.json").is_file():
        files["tokenizer"] = ("tokenizer.json", (folder / "tokenizer.json").read_bytes())
    files.update({field: (files[field][0], data) for field, data in replaced.items()})
    return files


def _sha256(files: dict[str, tuple[str, bytes]]) -> str:
    """Each file's name, a NUL, its bytes and a NUL, in name order: the documented version."""
    digest = hashlib.sha256()
    for file_name, data in sorted(files.values()):
        digest.update(file_name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copytree(MODELS / "walkthrough", folder / "walkthrough")
    return folder


def _client(models_dir: Path, **settings: Any) -> TestClient:
    merged = {"models_dir": models_dir, "admin_token": TOKEN, **settings}
    config = Settings(**merged)
    return TestClient(create_app(config, load_directory(models_dir, torch.device("cpu"), config)))


@pytest.fixture
def client(models_dir: Path) -> Iterator[TestClient]:
    with _client(models_dir) as test_client:
        yield test_client


def test_without_an_admin_token_the_routes_do_not_exist(models_dir):
    config = Settings(models_dir=models_dir)
    with TestClient(create_app(config, load_directory(models_dir, torch.device("cpu"), config))) as c:
        assert c.put("/models/x", files=_files("walkthrough"), headers=AUTH).status_code == 405
        assert c.delete("/models/walkthrough", headers=AUTH).status_code == 405
        assert "put" not in c.get("/openapi.json").json()["paths"]["/models/{model}"]


def test_no_token_is_401_and_a_wrong_one_403_and_both_are_counted(client):
    missing = client.put("/models/new", files=_files("walkthrough"))
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = client.delete("/models/walkthrough", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert client.put("/models/new", files=_files("walkthrough"), headers={"Authorization": TOKEN}).status_code == 401
    found = parse(client.get("/metrics").text)
    assert found["lrp_model_changes_total", labels(model="new", operation="put", outcome="unauthorized")] == 2
    assert found["lrp_model_changes_total", labels(model="walkthrough", operation="delete", outcome="forbidden")] == 1
    assert client.post("/predict/walkthrough", json={"inputs": WALKTHROUGH}).status_code == 200


def test_a_new_model_is_served_at_once_and_after_a_restart(client, models_dir):
    files = _files("breast-cancer")
    answer = client.put("/models/cancer", files=files, headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == "/models/cancer"
    assert answer.json()["version"] == _sha256(files)
    assert answer.json()["name"] == "cancer" and answer.json()["classes"] == ["malignant", "benign"]
    row = json.loads((MODELS / "breast-cancer" / "model.json").read_text())["input"]["example"]
    served = client.post("/predict/cancer", json={"inputs": [row]})
    assert served.status_code == 200
    detail = client.get("/models/cancer").json()
    assert detail["version"] == _sha256(files) and detail["loaded_at"].endswith("+00:00")
    restarted = load_directory(models_dir, torch.device("cpu"), Settings(models_dir=models_dir))
    assert restarted.names == ["cancer", "walkthrough"]
    assert restarted.get("cancer").version == _sha256(files)
    entry = restarted.get("cancer")
    logits = entry.prepared.predict(decode_instances(entry.spec.input, [row], max_pixels=1).x)[0].tolist()
    assert served.json()["predictions"][0]["logits"] == pytest.approx(logits, rel=1e-6)
    found = parse(client.get("/metrics").text)
    assert found["lrp_model_changes_total", labels(model="cancer", operation="load", outcome="done")] == 1


def test_a_replaced_model_serves_its_new_version_and_leaves_no_old_files(client, models_dir):
    assert client.put("/models/digits", files=_files("digits"), headers=AUTH).status_code == 201
    first = client.get("/models/digits").json()["version"]
    image = json.loads((MODELS / "digits" / "model.json").read_text())["input"]["example"]
    before = client.post("/predict/digits", json={"inputs": [image]}).json()["predictions"][0]["logits"]
    replaced = client.put("/models/digits", files=_files("residual"), headers=AUTH)
    assert replaced.status_code == 200
    assert replaced.json()["version"] == _sha256(_files("residual")) != first
    after = client.post("/predict/digits", json={"inputs": [image]}).json()["predictions"][0]["logits"]
    assert after != before
    assert (models_dir / "digits").is_symlink()
    assert len(list((models_dir / ".versions").iterdir())) == 1
    assert not list(models_dir.glob(".staging-*"))


def test_a_shipped_folder_is_replaced_in_place(client, models_dir):
    assert client.put("/models/walkthrough", files=_files("walkthrough"), headers=AUTH).status_code == 200
    assert (models_dir / "walkthrough").is_symlink()
    assert client.post("/predict/walkthrough", json={"inputs": WALKTHROUGH}).status_code == 200


@pytest.mark.parametrize(("files", "message"), [
    (_files("walkthrough", model_json=b"{not json"), "model 'walkthrough': model.json is not valid JSON"),
    (_files("walkthrough", weights=b"\x00" * 64), "model 'walkthrough': weights.safetensors is not a valid"),
    (_files("breast-cancer", weights=(MODELS / "walkthrough" / "weights.safetensors").read_bytes()),
     "weights.safetensors has no tensor(s)"),
    ({"model_json": _files("walkthrough")["model_json"]}, "missing ['weights']"),
    ({**_files("walkthrough"), "script": ("run.py", b"import os")}, "unknown ['script']"),
])
def test_a_refused_upload_names_the_problem_and_the_old_version_keeps_serving(client, models_dir, files, message):
    before = client.get("/models/walkthrough").json()["version"]
    answer = client.put("/models/walkthrough", files=files, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_model" and message in answer.json()["error"]["message"]
    assert client.get("/models/walkthrough").json()["version"] == before
    assert client.post("/predict/walkthrough", json={"inputs": WALKTHROUGH}).status_code == 200
    assert not list(models_dir.glob(".staging-*")) and not (models_dir / "walkthrough").is_symlink()


@pytest.mark.parametrize("name", ["Upper", "-dash-first", "a" * 65, "dot..", "space name"])
def test_names_are_checked_and_never_a_path(client, name):
    answer = client.put(f"/models/{name}", files=_files("walkthrough"), headers=AUTH)
    if name == "dot..":  # a valid name: dots are allowed after the first character
        assert answer.status_code == 201
        return
    assert answer.status_code == 422 and "must match [a-z0-9][a-z0-9._-]{0,63}" in answer.json()["error"]["message"]


def test_an_upload_is_multipart_and_within_the_model_size_limit(models_dir):
    with _client(models_dir, max_model_bytes=2000) as small:
        too_big = small.put("/models/digits", files=_files("digits"), headers=AUTH)
        assert too_big.status_code == 413 and "LRP_MAX_MODEL_BYTES" in too_big.json()["error"]["message"]
        as_json = small.put("/models/x", json={"model_json": "{}"}, headers=AUTH)
        assert as_json.status_code == 415


def test_a_read_only_models_folder_is_a_503_and_changes_nothing(client, monkeypatch):
    from service.store import files

    def read_only(models_dir: Path) -> Path:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files, "staging_folder", read_only)
    answer = client.put("/models/cancer", files=_files("breast-cancer"), headers=AUTH)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "storage_unavailable"
    assert "Read-only file system" in answer.json()["error"]["message"]
    assert client.get("/models/cancer").status_code == 404


def test_delete_stops_new_requests_and_removes_the_files(client, models_dir):
    assert client.put("/models/cancer", files=_files("breast-cancer"), headers=AUTH).status_code == 201
    assert client.delete("/models/cancer", headers=AUTH).status_code == 204
    assert client.get("/models/cancer").status_code == 404
    assert client.post("/predict/cancer", json={"inputs": [[0.0] * 30]}).status_code == 404
    assert client.delete("/models/cancer", headers=AUTH).status_code == 404
    assert sorted(p.name for p in models_dir.iterdir() if not p.name.startswith(".")) == ["walkthrough"]
    assert list((models_dir / ".versions").iterdir()) == []
    assert client.delete("/models/walkthrough", headers=AUTH).status_code == 204  # a shipped folder too
    assert list(models_dir.iterdir()) == [models_dir / ".versions"]


def test_requests_in_flight_finish_on_the_version_they_started_with(models_dir, monkeypatch):
    """A slow request on version 1, then a replacement, then a request on version 2, then a delete while another
    slow one runs: each answer comes from the version its request found, and the delete waits for it."""
    started, release = threading.Event(), threading.Event()
    real = inference.run_batch
    ran: list[str] = []

    def slow(entry, key, samples):
        ran.append(entry.version)
        if len(ran) in (1, 3):  # the first and the third pass wait to be released
            started.set()
            release.wait(10)
        return real(entry, key, samples)

    monkeypatch.setattr(inference, "run_batch", slow)
    config = Settings(models_dir=models_dir, admin_token=SecretStr(TOKEN), max_delay_ms=0)
    app = create_app(config, load_directory(models_dir, torch.device("cpu"), config))
    image = json.loads((MODELS / "digits" / "model.json").read_text())["input"]["example"]

    async def scenario() -> tuple[Any, ...]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            assert (await client.put("/models/d", files=_files("digits"), headers=AUTH)).status_code == 201
            first = asyncio.ensure_future(client.post("/predict/d", json={"inputs": [image]}))
            await asyncio.to_thread(started.wait, 10)
            replaced = await client.put("/models/d", files=_files("residual"), headers=AUTH)
            started.clear()
            release.set()
            one = await first
            two = await client.post("/predict/d", json={"inputs": [image]})
            release.clear()
            third = asyncio.ensure_future(client.post("/predict/d", json={"inputs": [image]}))
            await asyncio.to_thread(started.wait, 10)
            deleting = asyncio.ensure_future(client.delete("/models/d", headers=AUTH))
            await asyncio.sleep(0.3)
            waited = not deleting.done()
            release.set()
            return replaced, one, two, await third, await deleting, waited

    replaced, one, two, three, deleted, waited = asyncio.run(scenario())
    assert replaced.status_code == 200 and one.status_code == two.status_code == three.status_code == 200
    assert ran == [_sha256(_files("digits")), _sha256(_files("residual")), _sha256(_files("residual"))]
    assert one.json()["predictions"][0]["logits"] != two.json()["predictions"][0]["logits"]
    assert three.json()["predictions"][0]["logits"] == two.json()["predictions"][0]["logits"]
    assert deleted.status_code == 204 and waited


def test_each_route_carries_its_own_body_limit(models_dir):
    """A model upload may pass LRP_MAX_BODY_BYTES up to LRP_MAX_MODEL_BYTES; the other routes stop at the body limit,
    /v2 answering in its protocol's form."""
    with _client(models_dir, max_upload_bytes=1000, max_body_bytes=1000 + MULTIPART_MARGIN) as small:
        files = _files("digits")
        assert sum(len(data) for _, data in files.values()) > 1000 + MULTIPART_MARGIN
        assert small.put("/models/digits", files=files, headers=AUTH).status_code == 201
        padding = " " * (1000 + MULTIPART_MARGIN)
        rest = small.post("/predict/walkthrough", content=f'{{"inputs": [[1, 0.8, 0.2]]}}{padding}',
                          headers={"Content-Type": "application/json"})
        assert rest.status_code == 413 and rest.json()["error"]["code"] == "payload_too_large"
        assert "LRP_MAX_BODY_BYTES" in rest.json()["error"]["message"]
        v2 = small.post("/v2/models/walkthrough/infer", content=f'{{"inputs": []}}{padding}',
                        headers={"Content-Type": "application/json"})
        assert v2.status_code == 413 and set(v2.json()) == {"error"} and "LRP_MAX_BODY_BYTES" in v2.json()["error"]
        assert small.get("/models/digits").json()["version"] == _sha256(files)


def test_a_broken_multipart_body_is_a_400_about_the_model_files(client, models_dir):
    """Found by schemathesis's fuzzing: more form fields than an upload has got the image routes' 400 message."""
    boundary = "b5a8b0a92bfc757c1243ce3b6f25d249"
    parts = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n{i}\r\n" for i in range(5))
    body = f"{parts}--{boundary}--\r\n".encode()
    answer = client.put("/models/fresh", content=body, headers={
        **AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "malformed_body"
    assert error["message"].startswith("the body of PUT /models/fresh could not be parsed as multipart/form-data "
                                       "(Too many fields. Maximum number of fields is 3.)")
    assert error["message"].endswith("send the files model_json, weights (and tokenizer) as a well-formed multipart "
                                     "form")
    assert client.get("/models/fresh").status_code == 404 and not list(models_dir.glob(".staging-*"))
