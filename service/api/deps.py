"""FastAPI dependencies: the service state and the model a path names, as `Annotated` aliases for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.inference import PipelineState
from service.loader import ModelEntry


async def _state(request: Request) -> PipelineState:
    state: PipelineState = request.app.state.service
    return state


State = Annotated[PipelineState, Depends(_state)]


async def _entry(state: State, model: str) -> ModelEntry:
    """The model named by the `{model}` path parameter: 404 for an unknown name, 503 while loading."""
    return state.ready_registry().get(model)


Entry = Annotated[ModelEntry, Depends(_entry)]
