"""Dynamic batching: concurrent requests of one operation on one model, run as one forward.

A ``Batcher`` is one FIFO queue of one operation (encode, decode) on one loaded
model, counted in images. Its drain task takes the queue's head and whatever follows
it, up to ATNL_BATCH_MAX_IMAGES images; while other requests of the operation are
still decoding their inputs (``arriving``) it waits up to ATNL_BATCH_MAX_DELAY_MS
for them, so a lone request never waits at all (Triton's
``max_queue_delay_microseconds``, BentoML's ``max_latency_ms``). The batch runs as
one call in an inference thread and each request gets its own slice back. While it
runs the next batch gathers, so under load batches grow by themselves.

The queue is bounded (ATNL_BATCH_MAX_QUEUED_IMAGES): a request that would overfill
it gets ``InferenceQueueFull``, 503 with Retry-After. A waiter cancelled before its
batch starts (its client went away, see service.disconnect) is dropped: its work
never runs. Batchers belong to one loaded model, so a hot swap sends new requests to
the new model's queues while the old ones drain; no batch mixes models.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from service import prometheus
from service.errors import QueueFull

BatchFn = Callable[[list[Any]], Sequence[Any]]
"""Runs one batch in a thread: one payload per request in (its images or latents), one result
per request out (an exception as a result fails that request alone)."""
ThreadRunner = Callable[[BatchFn, list[Any]], Awaitable[Sequence[Any]]]
"""How a batch gets its inference thread (``Engine.run``: the shared limiter)."""


class InferenceQueueFull(QueueFull):
    """The batch queue of an operation holds ATNL_BATCH_MAX_QUEUED_IMAGES images already."""

    title = "Inference queue full"


@dataclass(frozen=True)
class BatchPolicy:
    """How a queue gathers its batches (see service.settings)."""

    max_images: int
    """Images in one batch at most (ATNL_BATCH_MAX_IMAGES); one larger request runs alone."""
    max_delay_s: float
    """Longest the head of the queue waits for requests still on their way (ATNL_BATCH_MAX_DELAY_MS)."""
    max_queued_images: int
    """Images waiting at most (ATNL_BATCH_MAX_QUEUED_IMAGES)."""
    retry_after_s: int
    """Retry-After of the 503 past that (ATNL_BATCH_RETRY_AFTER_SECONDS)."""


@dataclass(eq=False)
class Waiting:
    payload: Sized
    """One request's n images or latents (its len is n)."""
    future: asyncio.Future[Any]


class Batcher:
    """The queue of one operation on one model, and the task that drains it."""

    def __init__(self, op: str, batch_fn: BatchFn, policy: BatchPolicy, run_in_thread: ThreadRunner) -> None:
        self.op = op
        self.batch_fn = batch_fn
        self.policy = policy
        self.run_in_thread = run_in_thread
        self.queued_images = 0
        self.arriving_requests = 0
        self._queue: deque[Waiting] = deque()
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a request's input decoding: the head of the queue may wait for it."""
        self.arriving_requests += 1
        try:
            yield
        finally:
            self.arriving_requests -= 1
            self._wake.set()

    async def submit(self, payload: Sized) -> Any:
        """Queue ``payload`` (n images or latents) and wait for its result; InferenceQueueFull if full."""
        n = len(payload)
        if self.queued_images and self.queued_images + n > self.policy.max_queued_images:
            raise InferenceQueueFull(
                f"the {self.op} queue holds {self.queued_images} images; the limit is "
                f"{self.policy.max_queued_images} (ATNL_BATCH_MAX_QUEUED_IMAGES)",
                retry_after=self.policy.retry_after_s,
            )
        waiting = Waiting(payload, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self.queued_images += n
        prometheus.BATCH_QUEUED.labels(self.op).inc(n)
        self._wake.set()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"atnl-batch-{self.op}")
        return await waiting.future  # cancelling this await cancels the future: _gather skips it

    def _pop(self) -> Waiting:
        waiting = self._queue.popleft()
        self.queued_images -= len(waiting.payload)
        prometheus.BATCH_QUEUED.labels(self.op).dec(len(waiting.payload))
        return waiting

    async def _gather(self) -> list[Waiting]:
        """The next batch: the head and what follows it in order, up to max_images; waits for
        arriving requests until the head has waited max_delay_s. Cancelled waiters are left out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.max_delay_s
        batch: list[Waiting] = []
        images = 0
        while True:
            while self._queue and (not batch or images + len(self._queue[0].payload) <= self.policy.max_images):
                waiting = self._pop()
                if not waiting.future.done():
                    batch.append(waiting)
                    images += len(waiting.payload)
            full = bool(self._queue) or images >= self.policy.max_images
            if full or self.arriving_requests == 0 or (batch and loop.time() >= deadline):
                return batch
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()) if batch else None)

    async def _drain(self) -> None:
        """Run batches while the queue has requests; the next submit starts a new drain."""
        batch: list[Waiting] = []
        try:
            while self._queue:
                batch = await self._gather()
                if batch:
                    await self._run(batch)
                batch = []
        finally:
            self._drainer = None
            for waiting in [*batch, *self._queue]:  # only when cancelled (shutdown): nobody is left hanging
                if not waiting.future.done():
                    waiting.future.cancel()

    async def _run(self, batch: list[Waiting]) -> None:
        prometheus.BATCH_IMAGES.labels(self.op).observe(sum(len(w.payload) for w in batch))
        try:
            results = await self.run_in_thread(self.batch_fn, [w.payload for w in batch])
        except Exception as e:  # the whole batch failed: every request in it hears why
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(e)
            return
        for waiting, result in zip(batch, results, strict=True):
            if waiting.future.done():  # its client left while the batch ran
                continue
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
