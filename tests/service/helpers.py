"""Helpers the service tests import (``tests.service.helpers``): conftest modules are
no place for importable helpers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import ASGITransport, AsyncClient
from redis import Redis

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


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 240.0, every: float = 0.3) -> Any:
    """``predicate()``'s first truthy value, polled every ``every`` s; the test fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def assert_problem(r, status: int, *words: str) -> dict:
    """``r`` is a problem+json answer with ``status`` whose detail contains each of ``words``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body


ATNL = shutil.which("atnl", path=str(Path(sys.executable).parent)) or "atnl"
"""The console script of this environment."""


class RedisServer:
    """A redis-server of our own on ``port`` that can be stopped and started again.

    ``persistent``: an append-only file fsynced on every write, in ``workdir`` (compose's
    Redis keeps one too), so a restart keeps the queue and every job."""

    def __init__(self, workdir: Path, port: int | None = None, persistent: bool = False) -> None:
        self.workdir, self.port, self.persistent = workdir, port or free_port(), persistent
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: the service tests need a real Redis")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except Exception as e:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on port {self.port}: {e}") from e
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` so far (VmHWM), MiB."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


class ApiProcess:
    """``atnl serve`` (uvicorn) as a real process on a free loopback port, with its log in a file;
    stopped, killed and started again at will."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "api.log"
        self.env = {**os.environ, "ATNL_HOST": "127.0.0.1", "ATNL_PORT": str(self.port), "ATNL_DEVICE": "cpu"}
        self.env |= {"ATNL_BOOTSTRAP_DEFAULT_MODEL": "false", "ATNL_LOG_LEVEL": "warning", **env}
        self.env.pop("ATNL_API_TOKEN", None)
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120) -> ApiProcess:
        """Start it (its cwd is ``workdir``: no stray .env) and wait until /readyz says 200."""
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([ATNL, "serve"], env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atnl serve exited with {self.proc.returncode}; log: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"atnl serve was not ready within {timeout:.0f} s; log: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
