"""PUT and DELETE /models/{name}: models added, replaced and removed at run time, only with
`Authorization: Bearer <LRP_ADMIN_TOKEN>` (compared in constant time). Without LRP_ADMIN_TOKEN these routes are not
mounted at all. The upload is multipart/form-data with the files `model_json`, `weights` and, for a text model,
`tokenizer`; nothing is fetched from a URL and nothing in a model is code."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.api.catalog import ModelDetail
from service.api.deps import State
from service.api.health import model_detail
from service.api.responses import LOADING, NOT_FOUND, error
from service.api.routing import ModelUploadRoute
from service.errors import (
    ForbiddenError,
    InvalidModelError,
    MalformedBodyError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from service.runtime import changes as manage
from service.vetting.checks import MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE

log = logging.getLogger("service.models")
FIELDS = {"model_json": MODEL_FILE, "weights": WEIGHTS_FILE, "tokenizer": TOKENIZER_FILE}
REQUIRED = ("model_json", "weights")


async def _admin(request: Request, state: State, name: str) -> None:
    """401 without a bearer token, 403 with another one than LRP_ADMIN_TOKEN (counted and logged either way)."""
    token = state.settings.admin_token
    assert token is not None, "the management routes exist only with a token"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    operation = request.method.lower()
    if scheme.lower() != "bearer" or not given:
        state.metrics.model_change(name, operation, "unauthorized")
        log.warning("refused %s /models/%s from %s: no bearer token", request.method, name, _client(request))
        raise UnauthorizedError("this route needs Authorization: Bearer <the LRP_ADMIN_TOKEN of the service>",
                                {"WWW-Authenticate": 'Bearer realm="models"'})
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        state.metrics.model_change(name, operation, "forbidden")
        log.warning("refused %s /models/%s from %s: wrong token", request.method, name, _client(request))
        raise ForbiddenError("the bearer token is not this service's LRP_ADMIN_TOKEN")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Admin = Annotated[None, Depends(_admin)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("No bearer token", "unauthorized", "this route needs Authorization: Bearer <the LRP_ADMIN_TOKEN of "
               "the service>"),
    403: error("Another token than LRP_ADMIN_TOKEN", "forbidden", "the bearer token is not this service's "
               "LRP_ADMIN_TOKEN"),
    400: error("The body is not a well-formed multipart/form-data body", "malformed_body",
               "the body of PUT /models/m could not be parsed as multipart/form-data (...); send the files "
               "model_json, weights (and tokenizer) as a well-formed multipart form"),
    413: error("The upload exceeds LRP_MAX_MODEL_BYTES", "payload_too_large",
               "the request body exceeds 1073741824 bytes (LRP_MAX_MODEL_BYTES)"),
    415: error("Not multipart/form-data", "unsupported_media_type",
               "PUT /models/m takes multipart/form-data, not application/json; send Content-Type: multipart/form-data"),
    422: error("A bad name, a missing file, or files the loader refuses (what served under the name keeps serving)",
               "invalid_model", "model 'm': weights.safetensors does not fit the graph in model.json: ..."),
    503: error("Still loading, or the models folder is read-only", "storage_unavailable",
               "the models folder (LRP_MODELS_DIR) cannot be written (Read-only file system); models can be added "
               "or removed at run time only where it is writable"),
}
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": list(REQUIRED), "properties": {
        "model_json": {"type": "string", "format": "binary", "description": "model.json"},
        "weights": {"type": "string", "format": "binary", "description": "weights.safetensors"},
        "tokenizer": {"type": "string", "format": "binary", "description": "tokenizer.json (text models)"}}}}}}}

router = APIRouter(route_class=ModelUploadRoute)


@router.put("/models/{name}", response_model=ModelDetail, tags=["models"], status_code=200,
            responses={201: {"model": ModelDetail, "description": "A new model, loaded and served"}, **ERRORS},
            openapi_extra=UPLOAD_BODY)
async def put_model(request: Request, state: State, name: str, _: Admin) -> Response:
    """Add (201) or replace (200) a model from its files, checked by the start-up loader and warmed up before it
    serves; requests already running finish on the version they started with."""
    manage.checked_name(name)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaTypeError(f"PUT /models/{name} takes multipart/form-data, not {media or 'no body'}; "
                                        "send the files model_json, weights (and tokenizer) as a multipart form")
    try:
        form = await request.form(max_files=len(FIELDS), max_fields=len(FIELDS))
    except HTTPException as problem:
        if problem.status_code != 400:
            raise
        raise MalformedBodyError(f"the body of PUT /models/{name} could not be parsed as multipart/form-data "
                                 f"({problem.detail}); send the files model_json, weights (and tokenizer) as a "
                                 "well-formed multipart form") from None
    try:
        unknown = sorted(set(form) - set(FIELDS))
        missing = [field for field in REQUIRED if not isinstance(form.get(field), UploadFile)]
        if unknown or missing:
            raise InvalidModelError(f"the upload needs the files {list(REQUIRED)} (and 'tokenizer' for a text "
                                    f"model); missing {missing}, unknown {unknown}")
        uploads = {FIELDS[field]: value.file for field, value in form.items() if isinstance(value, UploadFile)}
        entry, created = await manage.put_model(state, name, uploads)
    finally:
        await form.close()
    body = model_detail(entry).model_dump(mode="json")
    headers = {"Location": f"/models/{name}"} if created else None
    return JSONResponse(body, status_code=201 if created else 200, headers=headers)


@router.delete("/models/{name}", tags=["models"], status_code=204, response_class=Response,
               responses={404: NOT_FOUND, 401: ERRORS[401], 403: ERRORS[403], 503: LOADING})
async def delete_model(state: State, name: str, _: Admin) -> Response:
    """Stop serving a model: new requests get 404 at once, requests already queued or running finish, then its
    files are removed from the models folder."""
    await manage.delete_model(state, name)
    return Response(status_code=204)
