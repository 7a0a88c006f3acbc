"""Helpers the service tests import (``tests.service.helpers``): conftest modules are
no place for importable helpers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from httpx import ASGITransport, AsyncClient

from service.main import create_app
from service.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def client_for(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://atnl.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


PROBLEM = "application/problem+json"


def assert_problem(r, status: int, *words: str) -> dict:
    """``r`` is a problem+json answer with ``status`` whose detail contains each of ``words``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body
