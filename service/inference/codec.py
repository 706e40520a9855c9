"""A protocol around the one pipeline, in the shape of LitServe's LitSpec: a codec decodes a request of its protocol
into a Job (what to run) and encodes the job's results (plain data, service.inference.results) into the protocol's
answer. REST (/predict, /explain) and the Open Inference Protocol are codecs (service.api); a new protocol is one more
codec, never a second pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from service.inference.job import Job
from service.inference.results import Answered
from service.inference.run import PipelineState
from service.loader import ModelEntry

RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")


class Codec(ABC, Generic[RequestT, AnswerT]):
    """How one protocol speaks to the pipeline."""

    @abstractmethod
    async def decode_request(self, state: PipelineState, entry: ModelEntry, request: RequestT) -> Job:
        """The job of `request` for model `entry`: its instances decoded into model space (on the event loop when
        small, else in a worker thread), its targets, composite and parameters resolved. A client's mistake raises
        the ServiceError (4xx) that says how to fix it, before anything is queued."""

    @abstractmethod
    def encode_response(self, request: RequestT, job: Job, results: Sequence[Answered]) -> AnswerT:
        """The protocol's answer to `request` from its job's results (one per sample, in order)."""

    def draws(self, request: RequestT) -> bool:
        """Whether encoding this answer draws pictures (PNG, HTML): it then runs in a worker thread, among at most
        LRP_MAX_CONCURRENT_DECODES requests' image work."""
        return False
