"""Domain errors of the service, and the one place they become HTTP responses.

Routes, the engine, the store and the job code raise these, and ``models`` raises
``models.errors.InputError`` for input a caller can fix; ``install_problem_handlers``
turns both into ``application/problem+json`` (RFC 9457) at the edge, 422 for either
kind of bad input. Any other exception is a bug: 500, logged. Routes document the
errors they can give with ``problems(...)`` (docs/API.md §3).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import InputError
from service.http_methods import allowed_methods

PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
"""The one error schema (service.schemas.Problem), added to the OpenAPI components by service.openapi."""
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
    documented_headers: ClassVar[dict[str, str]] = {}
    """The headers this error's answers carry, with what each says (for OpenAPI)."""

    def __init__(self, detail: str, **extra: Any) -> None:
        """``extra`` goes into the problem body; ``field`` there names the input at fault."""
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(ServiceError):
    """A field missing, of the wrong type or out of its bounds (`errors` lists each), or a request
    the service cannot do (`field` names the input)."""

    status = 422
    title = "Invalid input"


class BadImage(InvalidInput):
    """Bytes that are not a decodable PNG/JPEG, or an image with no ink."""

    title = "Bad image"


class PayloadTooLarge(ServiceError):
    """A body, file, field, image or count over its limit; the detail names the ATNL_* setting."""

    status = 413
    title = "Payload too large"


class UnsupportedMediaType(ServiceError):
    """A JSON endpoint sent a body that is not application/json."""

    status = 415
    title = "Unsupported media type"


class ModelNotReady(ServiceError):
    """No model is loaded yet (first start still training, or the store is empty)."""

    status = 503
    title = "Model not ready"


class ModelNotFound(ServiceError):
    """No checkpoint of that id in the model store, or one that cannot be loaded."""

    status = 404
    title = "Model not found"


class ModelMismatch(ServiceError):
    """The request pinned a model (`model_id`) that is not the one this replica serves; `active` names that one."""

    status = 409
    title = "Model mismatch"

    @classmethod
    def of(cls, served: str, requested: str) -> ModelMismatch:
        return cls(
            f"this replica serves model {served!r}, not {requested!r}: the latents of one model mean nothing to "
            "another (GET /v1/models says which is active; send the request again without model_id, or re-encode)",
            active=served,
            requested=requested,
        )


class DatasetNotFound(ServiceError):
    """No uploaded data set of that id (never made, or deleted)."""

    status = 404
    title = "Data set not found"


class JobNotFound(ServiceError):
    """No job of that id (never made, or expired after ATNL_RESULT_TTL_SECONDS / ATNL_FAILURE_TTL_SECONDS)."""

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
    documented_headers: ClassVar[dict[str, str]] = {"Retry-After": "Seconds to wait before trying again."}

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"Retry-After": str(retry_after)}


class Unauthorized(ServiceError):
    """ATNL_API_TOKEN is set and the request lacks `Authorization: Bearer <token>`, or the token is wrong."""

    status = 401
    title = "Unauthorized"
    documented_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "`Bearer`: the scheme to use."}


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
        """Starlette's own errors: 404 (no such path), 405 (with the path's Allow), 400 (a body that cannot be parsed)."""
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app.router.routes, request.scope))
        return problem(exc.status_code, title, detail, request.url.path, headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal error", f"{type(exc).__name__}: see the server log", request.url.path)


OTHER_PROBLEMS = {400: "Bad Request: a multipart form that cannot be parsed."}
"""What the statuses that no ServiceError stands for say, as ``problems`` documents them."""


def problems(*kinds: type[ServiceError] | int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each error it can give, as application/problem+json.

    ``kinds`` are ServiceError classes (their status, title, first docstring line and headers)
    or bare statuses of OTHER_PROBLEMS; several kinds of one status share one entry."""
    out: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        if isinstance(kind, int):
            status, text, headers = kind, OTHER_PROBLEMS[kind], {}
        else:
            doc = " ".join((kind.__doc__ or "").strip().split("\n\n")[0].split())
            status, text, headers = kind.status, f"{kind.title}{': ' + doc if doc else '.'}", kind.documented_headers
        entry = out.setdefault(status, {"description": "", "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}})
        entry["description"] = " ".join(x for x in (entry["description"], text) if x)
        for name, about in headers.items():
            entry.setdefault("headers", {})[name] = {"description": about, "schema": {"type": "string"}}
    return out
