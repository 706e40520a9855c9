"""The pipeline's asynchronous stages on the event loop: decode a request's inputs (small ones inline, large ones
and images in a worker thread), queue its job in the model's micro-batcher, and have its codec encode the answer."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from service.errors import InvalidImageError, OverloadedError, PayloadTooLargeError, QueueTimeoutError
from service.inference.codec import Codec
from service.inference.job import Job
from service.inference.results import Answered
from service.inference.run import PipelineState
from service.loader import ModelEntry
from service.modality import instances as inputs
from service.modality.instances import Decoded
from service.serving.batcher import DeadlineExceededError, QueueFullError

INLINE_VALUES = 4096  # at most this many input values are decoded on the event loop (cheaper than a thread hop)
RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")


async def decode_instances(state: PipelineState, entry: ModelEntry, instances: Sequence[Any]) -> Decoded:
    """A request's JSON instances in model space; more than LRP_MAX_INSTANCES is a 413. Texts are tokenized and
    base64 images decoded in a worker thread (images: at most LRP_MAX_CONCURRENT_DECODES requests' at once); small
    numeric inputs on the event loop."""
    settings = state.settings
    if len(instances) > settings.max_instances:
        raise PayloadTooLargeError(f"{len(instances)} inputs in one request; the limit is {settings.max_instances} "
                                   "(LRP_MAX_INSTANCES): split the request")
    spec = entry.spec.input
    if entry.text is not None:  # never on the event loop: a tokenizer's regular expressions may run long
        return await asyncio.to_thread(inputs.decode_texts, entry.text, instances, settings.max_request_tokens)
    images = any(isinstance(i, str) for i in instances)
    if len(instances) * math.prod(spec.shape) <= INLINE_VALUES and not images:
        return inputs.decode_instances(spec, instances, settings.max_image_pixels)
    if not images:
        return await asyncio.to_thread(inputs.decode_instances, spec, instances, settings.max_image_pixels)
    async with state.image_work:
        return await asyncio.to_thread(inputs.decode_instances, spec, instances, settings.max_image_pixels)


async def decode_upload(state: PipelineState, entry: ModelEntry, data: bytes) -> Decoded:
    """An uploaded image, for an image model only, decoded in a worker thread (at most LRP_MAX_CONCURRENT_DECODES
    at once)."""
    if entry.spec.input.kind != "image":
        raise InvalidImageError(
            f"model '{entry.name}' takes {entry.spec.input.kind} input, not images; POST JSON "
            f"{{\"inputs\": [...]}} to /predict/{entry.name} or /explain/{entry.name}")
    async with state.image_work:
        return await asyncio.to_thread(inputs.decode_upload, entry.spec.input, data, state.settings.max_image_pixels)


async def run(state: PipelineState, job: Job) -> list[Answered]:
    """Run the job's samples through the model's micro-batcher: one result per sample, in order. Full queue: 503 with
    Retry-After; past the deadline while queued: 504; a sample that failed alone: its error."""
    batcher = state.batcher(job.entry)
    try:
        async with state.using(job.entry):
            return await batcher.submit(job.key, job.samples)
    except QueueFullError:
        raise OverloadedError(f"model '{job.entry.name}' has {batcher.queued} inputs queued, its limit "
                              "(LRP_MAX_QUEUE); retry after the Retry-After seconds", {"Retry-After": "1"}) from None
    except DeadlineExceededError:
        raise QueueTimeoutError(f"the request waited more than {batcher.settings.timeout_s:g} s in the queue of "
                                f"model '{job.entry.name}' and was not run; retry later") from None


async def answer(state: PipelineState, codec: Codec[RequestT, AnswerT], request: RequestT, job: Job) -> AnswerT:
    """Run the job and encode its answer with the request's codec (a drawn answer in a worker thread)."""
    results = await run(state, job)
    if codec.draws(request):
        async with state.image_work:  # drawing over an upload is image work too
            return await asyncio.to_thread(codec.encode_response, request, job, results)
    return codec.encode_response(request, job, results)
