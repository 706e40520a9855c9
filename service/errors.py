"""Errors the service raises on purpose, each with its HTTP status and a stable machine-readable code.

The web layer turns them into `{"error": {"code", "message"}}`; the message says how to fix the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def describe_validation_errors(errors: Sequence[Mapping[str, Any]], whole: str, skip: str | None = None,
                               limit: int | None = None) -> str:
    """Pydantic errors as "where: message; ...": `where` is the dotted location (`whole` when empty, `skip`
    left out of it); past `limit` errors the rest are counted ("; and N more")."""
    shown = errors if limit is None else errors[:limit]
    parts = []
    for error in shown:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != skip) or whole
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = len(errors) - len(shown)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


MESSAGE_LIMIT = 2000  # characters of an error message kept (a file's million names must not make a 20 MB answer)


def bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """`message`, or its first `limit` characters and how many more there were."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit} more characters)"


class ServiceError(Exception):
    """Base class: `status` is the HTTP status, `code` a stable identifier, the message (bounded) is for people."""

    status = 500
    code = "internal"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ModelNotFoundError(ServiceError):
    """The path names no registered model."""

    status = 404
    code = "model_not_found"


class MalformedBodyError(ServiceError):
    """A body that cannot be parsed in the form it declares (a broken multipart body)."""

    status = 400
    code = "malformed_body"


class InvalidInputError(ServiceError):
    """The request is well-formed JSON but its values cannot be used (shape, dtype, NaN, range, target)."""

    status = 422
    code = "invalid_input"


class InvalidImageError(ServiceError):
    """An image that is not a decodable PNG/JPEG within the pixel limit, or an image sent to a model that does not
    take images."""

    status = 422
    code = "invalid_image"


class PayloadTooLargeError(ServiceError):
    """The request carries more instances or bytes than the configured limits."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    """The request's Content-Type is not one the route takes."""

    status = 415
    code = "unsupported_media_type"


class NotReadyError(ServiceError):
    """The service is still loading models or is shutting down."""

    status = 503
    code = "not_ready"


class OverloadedError(ServiceError):
    """The model's queue is full; the client should retry after the Retry-After header's seconds."""

    status = 503
    code = "overloaded"


class QueueTimeoutError(ServiceError):
    """The request waited in the queue past its deadline and was not run."""

    status = 504
    code = "timeout"


class ClientDisconnectedError(ServiceError):
    """The client closed the connection before its answer was ready (nginx's 499; nobody receives it)."""

    status = 499
    code = "client_disconnected"


class DeviceMemoryError(ServiceError):
    """One input alone does not fit in device memory, even after the batch was split down to it."""

    status = 500
    code = "out_of_memory"


class NumericalError(ServiceError):
    """The computation gave NaN or Inf for this instance (a server-side fault, reported alone)."""

    status = 500
    code = "numerical_error"


class UnauthorizedError(ServiceError):
    """A model-management request without `Authorization: Bearer <token>`."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ServiceError):
    """A model-management request whose bearer token is not LRP_ADMIN_TOKEN."""

    status = 403
    code = "forbidden"


class InvalidModelError(ServiceError):
    """An uploaded model that the loader refuses (the message names the file and the problem), or a bad name."""

    status = 422
    code = "invalid_model"


class StorageError(ServiceError):
    """The models folder cannot be written (a read-only volume): models cannot be added or removed at run time."""

    status = 503
    code = "storage_unavailable"


class ModelFileError(Exception):
    """A model directory that cannot be loaded; the message (bounded) names the model, the file and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(message))
