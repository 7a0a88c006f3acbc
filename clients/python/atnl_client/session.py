"""What every request of a client carries: its headers and its timeout."""

from __future__ import annotations

VERSION = "0.1.0"
DEFAULT_TIMEOUT_SECONDS = 60.0
"""Seconds one request may take (connect, each read, each write); hallucinating thousands of images takes a while."""
USER_AGENT = f"atnl-client/{VERSION}"


def session_headers(token: str | None) -> dict[str, str]:
    """The headers of every request: who asks, and the bearer token if there is one."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers
