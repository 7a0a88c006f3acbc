"""Helpers the service tests import (``tests.service.helpers``): conftest modules are
no place for importable helpers. Real ``atnl serve`` and ``atnl worker`` processes come from
benchmarks.servers, as the benchmarks and scripts start them."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from httpx import ASGITransport, AsyncClient
from redis import Redis

from benchmarks.servers import Process, free_port, wait_until
from service.main import create_app
from service.settings import Settings


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


class RedisServer(Process):
    """A redis-server of our own on ``port`` that can be stopped and started again.

    ``persistent``: an append-only file fsynced on every write, in ``workdir`` (compose's
    Redis keeps one too), so a restart keeps the queue and every job."""

    def __init__(self, workdir: Path, port: int | None = None, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(workdir)]
        super().__init__("redis", [shutil.which("redis-server") or "redis-server", *args], dict(os.environ), workdir)

    def start(self, timeout: float = 10) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: the service tests need a real Redis")
        super().start()
        client = Redis.from_url(self.url)

        def answers() -> bool:
            if self.exited() is not None:
                raise RuntimeError(f"redis-server exited with {self.exited()}: {self.log_tail()}")
            try:
                return bool(client.ping())
            except Exception:
                return False

        try:
            wait_until(answers, f"redis-server on port {self.port}", timeout, every=0.05)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}: {e}") from e
        finally:
            client.close()
        return self
