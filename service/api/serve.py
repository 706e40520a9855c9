"""How a route hands a protocol's request to the one pipeline: its codec decodes it into a job, the pipeline runs the
job and the codec encodes the answer; a client that disconnects while the job is queued or running drops it."""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request

from service import inference
from service.api.disconnect import unless_disconnected
from service.inference import Codec, PipelineState
from service.loader import ModelEntry

RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")


async def served(http: Request, state: PipelineState, entry: ModelEntry, codec: Codec[RequestT, AnswerT],
                 request: RequestT) -> AnswerT:
    """The answer to `request` (decoded before the disconnect watch starts: the body has been read by then)."""
    job = await codec.decode_request(state, entry, request)
    return await unless_disconnected(http, inference.answer(state, codec, request, job))
