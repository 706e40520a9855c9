"""LRP_MAX_BODY_BYTES: a body over the limit is refused with 413 while it streams in, before anything parses it."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.api import fast_json
from service.api.app import create_app
from service.settings import MULTIPART_MARGIN, Settings
from tests.conftest import MODELS, shipped_models
from tests.support.prometheus import labels, parse

LIMIT = 200_000


@pytest.fixture
def app():
    settings = Settings(models_dir=MODELS, max_body_bytes=LIMIT, max_upload_bytes=LIMIT - MULTIPART_MARGIN)
    return create_app(settings, shipped_models(settings))


def post(app, chunks: list[bytes], length: int | None) -> tuple[int, dict, int]:
    """POST /predict/walkthrough with the body in `chunks` (a Content-Length header when `length` is given); the
    status, the JSON body of the answer and how many chunks the server read."""
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": "/predict/walkthrough", "raw_path": b"/predict/walkthrough", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "root_path": ""}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), read


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app, monkeypatch):
    parsed: list[bytes] = []
    monkeypatch.setattr(fast_json, "parse_json", lambda body: parsed.append(body))
    status, body, read = post(app, [b"{" + b" " * (LIMIT + 10) + b"}"], LIMIT + 12)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert body["error"]["message"].startswith(f"the request body exceeds {LIMIT} bytes (LRP_MAX_BODY_BYTES)")
    assert read == 0 and parsed == []
    found = parse(app.state.service.metrics.render().decode())
    assert found["lrp_requests_total", labels(model="walkthrough", verb="predict", status="413")] == 1


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(app):
    chunks = [b'{"inputs": [' + b" " * 50_000] + [b" " * 50_000] * 99 + [b"[1, 0.8, 0.2]]}"]
    status, body, read = post(app, chunks, None)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert read == 4  # 4 chunks of 50 kB (and the opening bracket) pass 200 kB; the other 97 are never read


def test_a_body_within_the_limit_is_served(app):
    text = json.dumps({"inputs": [[1, 0.8, 0.2]]}).encode()
    status, body, _ = post(app, [text[:10], text[10:]], None)
    assert status == 200 and body["predictions"][0]["label"] == "positive"


def test_the_body_limit_must_leave_room_for_an_upload():
    with pytest.raises(ValueError, match="must exceed LRP_MAX_UPLOAD_BYTES"):
        Settings(max_body_bytes=1_000_000, max_upload_bytes=1_000_000)
