"""The errors the client raises: one ``ProblemError`` per error answer (RFC 9457 problem+json),
a subclass per kind a caller handles differently (docs/API.md §3)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

PROBLEM_JSON = "application/problem+json"
MAX_DETAIL_CHARS = 500
"""Characters of a non-problem error body (a proxy's HTML page) kept as its ``detail``."""


class ProblemError(Exception):
    """An error answer (4xx, 5xx). ``body`` is the whole problem+json dict (for an answer that is not
    problem+json, such as a proxy's page, one built from its status and text)."""

    status_code: ClassVar[int | None] = None
    """The HTTP status this subclass stands for (None: any)."""

    def __init__(self, body: dict[str, Any], retry_after: float | None = None) -> None:
        self.body = body
        self.status: int = int(body.get("status") or 0)
        self.title: str = str(body.get("title") or "")
        self.detail: str = str(body.get("detail") or "")
        self.field: str | None = body.get("field")
        self.errors: list[dict[str, Any]] = list(body.get("errors") or [])
        self.retry_after = retry_after
        """Seconds the server asked to wait (Retry-After), if it said."""
        super().__init__(f"{self.status} {self.title}: {self.detail}" + (f" (field {self.field})" if self.field else ""))


class InvalidInput(ProblemError):
    """422: a field missing, of the wrong type or out of bounds (``field``, ``errors``), or a bad image."""

    status_code = 422


class PayloadTooLarge(ProblemError):
    """413: a body, file, image or count over a limit; ``detail`` names the ATNL_* setting."""

    status_code = 413


class Unauthorized(ProblemError):
    """401: the server has a token and the request did not carry it (``Client(token=...)``)."""

    status_code = 401


class Forbidden(ProblemError):
    """403: the server has no token and answers mutating requests from loopback clients only."""

    status_code = 403


class NotFound(ProblemError):
    """404: no such model, job, data set, test image or path."""

    status_code = 404


class Conflict(ProblemError):
    """409: a model pin that failed (``ModelMismatch``), or a job that already ended (``body["job_status"]``)."""

    status_code = 409


class ModelMismatch(Conflict):
    """409 Model mismatch: the request pinned ``requested`` and this replica serves ``active``; nothing
    was computed (latents are never decoded by a model that did not make them)."""

    def __init__(self, body: dict[str, Any], retry_after: float | None = None) -> None:
        super().__init__(body, retry_after)
        self.active: str | None = body.get("active")
        self.requested: str | None = body.get("requested")


class Unavailable(ProblemError):
    """503: a model not loaded yet, or the training queue, model store or inference queue unavailable
    or full. The client retries these itself (``retries``) before raising."""

    status_code = 503


class NotReady(Unavailable):
    """503 Model not ready: no model loaded yet (the first start may still be training one)."""


BY_STATUS: dict[int, type[ProblemError]] = {
    cls.status_code: cls
    for cls in (InvalidInput, PayloadTooLarge, Unauthorized, Forbidden, NotFound, Conflict, Unavailable)
    if cls.status_code is not None
}
BY_TITLE: dict[str, type[ProblemError]] = {"Model mismatch": ModelMismatch, "Model not ready": NotReady}
"""Problem titles (fixed per kind, docs/API.md §3) with a class of their own."""


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the answer's ``Retry-After`` asks to wait (delay-seconds or an HTTP date); None without one."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        date = response.headers.get("date")
        now = parsedate_to_datetime(date) if date else None
        if now is None or when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return max(0.0, seconds)


def problem_body(response: httpx.Response) -> dict[str, Any]:
    """The answer's problem+json dict; for any other body, one with its status, reason and text."""
    if response.headers.get("content-type", "").split(";")[0].strip() == PROBLEM_JSON:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
    return {"status": response.status_code, "title": response.reason_phrase, "detail": response.text[:MAX_DETAIL_CHARS]}


def problem_error(response: httpx.Response) -> ProblemError:
    """The exception of an error answer: by its title where that has a class, else by its status."""
    body = problem_body(response)
    kind = BY_TITLE.get(str(body.get("title"))) or BY_STATUS.get(response.status_code, ProblemError)
    return kind(body, retry_after(response))
