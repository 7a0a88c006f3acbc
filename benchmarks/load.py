"""A light HTTP/1.1 load generator for ``atnl bench service``.

The server under test shares the machine with its load, so the load must cost
little CPU: each simulated client holds one keep-alive connection and writes
requests prepared once as bytes (multipart bodies included), then reads the status
line, the headers and a Content-Length body. Every server the bench measures (the
service, with batching on and off, and the bare FastAPI endpoint) gets the same load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


@dataclass(frozen=True)
class Prepared:
    """One request, ready to write on a connection."""

    name: str
    raw: bytes


def prepare(name: str, port: int, path: str, **httpx_args: Any) -> Prepared:
    """``POST path`` (or GET when no body) as HTTP/1.1 bytes; body arguments as httpx takes them
    (``files=``, ``data=``, ``json=``)."""
    method = "POST" if httpx_args else "GET"
    request = httpx.Request(method, f"http://127.0.0.1:{port}{path}", **httpx_args)
    body = request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "accept-encoding")}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return Prepared(name, head.encode("latin-1") + body)


@dataclass
class Outcome:
    """What a run of requests saw: latency per request (seconds) and status counts."""

    seconds: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    wall: float = 0.0

    def record(self, status: int, seconds: float) -> None:
        self.seconds.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def requests(self) -> int:
        return len(self.seconds)

    @property
    def failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.seconds) * 1000.0, q)) if self.seconds else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rps": self.requests / self.wall if self.wall else 0.0,
            "p50_ms": self.ms(50),
            "p99_ms": self.ms(99),
            "failures": self.failures,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


class Connection:
    """One keep-alive connection: write a prepared request, read its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        return cls(reader, writer)

    async def send(self, request: Prepared) -> tuple[int, bytes]:
        self.writer.write(request.raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            raise RuntimeError(f"{request.name}: answer without Content-Length ({lines[0]})")
        return status, await self.reader.readexactly(int(headers["content-length"]))

    def close(self) -> None:
        self.writer.close()


RequestSource = Callable[[int], Prepared] | Prepared
"""The one request to send, or request k for each k."""


async def run_load(
    port: int, requests: RequestSource, n: int, concurrency: int, outcomes: dict[str, Outcome] | None = None
) -> Outcome:
    """``n`` requests from ``concurrency`` clients at once, each on its own connection; request k is
    ``requests(k)`` (or the one prepared request). Per-name outcomes go to ``outcomes`` if given."""
    pick = requests if callable(requests) else (lambda k: requests)
    total = Outcome()
    todo: Iterator[int] = iter(range(n))

    async def client() -> None:
        conn = await Connection.open(port)
        try:
            for k in todo:
                request = pick(k)
                t = time.perf_counter()
                status, _ = await conn.send(request)
                seconds = time.perf_counter() - t
                total.record(status, seconds)
                if outcomes is not None:
                    outcomes.setdefault(request.name, Outcome()).record(status, seconds)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    total.wall = time.perf_counter() - start
    return total


async def poll_while(port: int, request: Prepared, busy: Sequence[asyncio.Task[Any]], interval_s: float) -> Outcome:
    """Send ``request`` every ``interval_s`` on one connection until every task in ``busy`` is done."""
    outcome = Outcome()
    conn = await Connection.open(port)
    start = time.perf_counter()
    try:
        while not all(task.done() for task in busy):
            t = time.perf_counter()
            status, _ = await conn.send(request)
            outcome.record(status, time.perf_counter() - t)
            await asyncio.sleep(interval_s)
    finally:
        conn.close()
    outcome.wall = time.perf_counter() - start
    return outcome
