"""Domain errors of the service, and the one place they become HTTP responses.

Routes, the engine, the store and the job code raise these, and ``models`` raises
``models.errors.InputError`` for input a caller can fix; ``install_problem_handlers``
turns both into ``application/problem+json`` (RFC 9457) at the edge, 422 for either
kind of bad input. Any other exception is a bug: 500, logged.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import InputError

PROBLEM_JSON = "application/problem+json"
MAX_LISTED_ERRORS = 20
"""Validation errors listed in one answer: a body with 10^5 bad items gets a short reply."""
log = logging.getLogger("atnl.service")


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+~-]+/)*[\w.@+~-]+/?")
"""An absolute filesystem path inside a message (not the path of a URL: no scheme or host before it)."""


def redact_paths(text: str) -> str:
    """``text`` with every absolute filesystem path replaced by ``<path>``: what an error may
    show a client without telling it the server's directory layout."""
    return ABSOLUTE_PATH.sub("<path>", text)


class ServiceError(Exception):
    """Base of every domain error; ``status`` is the HTTP status it maps to."""

    status: int = 500
    title: str = "Internal error"
    headers: dict[str, str] | None = None
    """Extra response headers (Retry-After, ...)."""

    def __init__(self, detail: str, **extra: Any) -> None:
        """``extra`` goes into the problem body; ``field`` there names the input at fault."""
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(ServiceError):
    """A request that is well-formed HTTP but asks for something impossible."""

    status = 422
    title = "Invalid input"


class BadImage(InvalidInput):
    """Bytes that are not a decodable PNG/JPEG, or an image with no ink."""

    title = "Bad image"


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"


class ModelNotReady(ServiceError):
    """No model is loaded yet (first start still training, or the store is empty)."""

    status = 503
    title = "Model not ready"


class ModelNotFound(ServiceError):
    status = 404
    title = "Model not found"


class JobNotFound(ServiceError):
    status = 404
    title = "Job not found"


class JobNotCancellable(ServiceError):
    """The job already ended (finished, failed, stopped or canceled)."""

    status = 409
    title = "Job cannot be canceled"


class QueueUnavailable(ServiceError):
    """Redis cannot be reached: training is down, inference is not."""

    status = 503
    title = "Training queue unavailable"


class QueueFull(ServiceError):
    """ATNL_MAX_QUEUED_JOBS jobs are already waiting; try again later."""

    status = 503
    title = "Training queue full"

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"Retry-After": str(retry_after)}


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ServiceError):
    """A mutating request from a non-loopback client while no ATNL_API_TOKEN is set."""

    status = 403
    title = "Forbidden"


def problem(
    status: int, title: str, detail: str, instance: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to problem+json."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(InputError)
    async def model_input_error(request: Request, exc: InputError) -> JSONResponse:
        """``models`` refusing caller-fixable input: 422, the same as ``InvalidInput``."""
        extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
        return problem(InvalidInput.status, InvalidInput.title, redact_paths(str(exc)), request.url.path, None, **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()[:MAX_LISTED_ERRORS]]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem(422, "Invalid input", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem(exc.status_code, title, detail, request.url.path)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal error", f"{type(exc).__name__}: see the server log", request.url.path)
