"""When the client tries a request again, and after how long.

A 503 means the server did nothing with the request (no model yet, a queue full, the store
unreachable), so any request may be sent again; a connection error may come after the server
acted, so only GETs are. 4xx answers are never retried: the same request gets the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from atnl_client.errors import retry_after

DEFAULT_RETRIES = 3
"""Retries of one request (so at most 4 tries)."""
BACKOFF_FIRST_SECONDS = 0.5
"""Wait before the first retry when the server gives no Retry-After; doubled for each next one."""
BACKOFF_CAP_SECONDS = 8.0
"""Longest wait between tries without Retry-After."""
MAX_RETRY_AFTER_SECONDS = 120.0
"""Longest Retry-After the client waits out; a longer one is raised at once (``ProblemError.retry_after``)."""
RETRIED_STATUS = 503
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
"""Methods sent again after a connection error."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = DEFAULT_RETRIES
    backoff_first: float = BACKOFF_FIRST_SECONDS
    backoff_cap: float = BACKOFF_CAP_SECONDS
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt + 1`` (attempt 0 is the first try)."""
        return float(min(self.backoff_cap, self.backoff_first * 2**attempt))

    def after_answer(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before sending again after ``response`` to try ``attempt``; None: do not."""
        if response.status_code != RETRIED_STATUS or attempt >= self.retries:
            return None
        asked = retry_after(response)
        if asked is None:
            return self.backoff(attempt)
        return asked if asked <= self.max_retry_after else None

    def after_error(self, attempt: int, method: str) -> float | None:
        """Seconds to wait before sending again after a connection error on try ``attempt``; None: do not."""
        if method.upper() not in IDEMPOTENT_METHODS or attempt >= self.retries:
            return None
        return self.backoff(attempt)
