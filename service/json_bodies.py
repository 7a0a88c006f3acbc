"""JSON request bodies: one media-type check (415) and one validation (422) for every JSON route.

FastAPI parses a pydantic body parameter on the event loop; a few MB of latents
would stall every other request meanwhile. Routes that take large JSON read the
raw bytes (already capped at ATNL_MAX_JSON_BYTES while streaming, see
service.body_caps) and parse them in a worker thread with ``parse_json_body``; small
ones (a training config, ``{}``) take the ``json_body`` dependency. Either way the
route documents its body with ``json_request_body`` (FastAPI cannot see it).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.errors import UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def json_body_bytes(request: Request) -> bytes:
    """The raw body of a request that must be JSON; 415 for any other content type."""
    if not is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("send the body as application/json", field="body")
    return await request.body()


def parse_json_body(model: type[M], raw: bytes) -> M:
    """Validate ``raw`` JSON against ``model``; errors become the usual 422 (RequestValidationError)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = [{**err, "loc": ("body", *err.get("loc", ()))} for err in e.errors(include_url=False, include_input=False)]
        raise RequestValidationError(errors) from None


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents ``model`` as the required JSON body of a route that reads it itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def json_body(model: type[M]) -> Callable[[Request], Coroutine[Any, Any, M]]:
    """A dependency reading the request's JSON body into ``model``: 415 for another media type, 422 for
    JSON that is invalid or does not fit. Document the route with ``openapi_extra=json_request_body(model)``."""

    async def read(request: Request) -> M:
        return parse_json_body(model, await json_body_bytes(request))

    return read
