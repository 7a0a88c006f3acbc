"""``atnl worker``: an RQ worker on the training queue.

The parent process never imports torch's CUDA side: each job runs in a forked
work horse that imports ``service.training.tasks`` -> ``models`` itself, so a CUDA
context is only ever created inside a job.

A Redis outage must cost neither the running job nor the worker. RQ's parent quits
on the first Redis error it meets while its horse trains (its periodic heartbeat),
leaving the horse orphaned and the queue without a worker; ``TrainingWorker`` logs
that error and waits for its horse, and ``run_worker`` starts a new worker once
Redis is back whenever one quits without having been asked to.

A horse that dies inside the atomic checkpoint write (killed, out of memory, stopped)
leaves a temporary directory in the store (never listed); the parent removes it when
it records the job's end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.settings import Settings
from service.store import ModelStore, open_store
from service.training.tasks import REDIS_ERRORS, REDIS_RETRY_SECONDS

log = logging.getLogger("atnl.worker")
JOB_MONITORING_INTERVAL_SECONDS = 5
"""How often the worker parent refreshes RQ's worker and job heartbeats while its horse
trains (RQ's default is 30 s): RQ's view of a running job stays fresh, and an outage of
Redis is met, and ridden out, within seconds (tests/service/test_faults.py relies on it)."""


class TrainingWorker(Worker):
    """RQ's forking worker that rides out a Redis outage (see the module docstring)."""

    signalled = False
    """Set by SIGINT/SIGTERM: the worker was asked to stop, so ``run_worker`` lets it."""

    def __init__(self, *args: Any, store: ModelStore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """RQ's failure bookkeeping; in the parent (its horse died: killed, stopped, timed out),
        also the removal of what the horse left of the checkpoint it was writing."""
        if not self.is_horse:
            model_id = (job.kwargs or {}).get("model_id")
            if isinstance(model_id, str) and not self.store.exists(model_id):
                for name in self.store.remove_partial(model_id):
                    log.warning("worker %s: removed %s, left by job %s dying in its checkpoint write", self.name, name, job.id)
        super().handle_job_failure(job, queue, *args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run a dequeued job, unless it was canceled meanwhile: a cancel and RQ's dequeue can
        cross (DELETE answered "canceled" as the job left the queue), and a canceled job must
        not run and end "stopped" after all."""
        if job.get_status(refresh=True) == JobStatus.CANCELED:
            queue.intermediate_queue.remove(job.id)  # else RQ's cleanup would fail it as "stuck"
            log.info("worker %s: job %s was canceled as it was dequeued; not run", self.name, job.id)
            return
        super().execute_job(job, queue)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """RQ's periodic heartbeats while the horse runs; a Redis error skips one, never the job."""
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_ERRORS as e:
            log.warning("worker %s: heartbeat of job %s skipped (Redis unreachable: %s); the job goes on", self.name, job.id, e)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # part of a transaction its caller executes (and handles)
            super().heartbeat(timeout, pipeline=pipeline)
        else:
            self._patiently(lambda: super(TrainingWorker, self).heartbeat(timeout), "heartbeat")

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
        else:
            self._patiently(lambda: super(TrainingWorker, self).set_state(state), f"state {state}")

    def _patiently(self, write: Callable[[], None], what: str) -> None:
        """Run one Redis write of the parent, trying again until Redis answers (or a stop signal)."""
        while True:
            try:
                write()
                return
            except REDIS_ERRORS as e:
                if self.signalled:
                    raise
                log.warning("worker %s: %s not written (Redis unreachable: %s); trying again", self.name, what, e)
                time.sleep(REDIS_RETRY_SECONDS)


def wait_for_redis(conn: Redis) -> None:
    """Return once ``conn`` answers a PING."""
    while True:
        try:
            conn.ping()
            return
        except REDIS_ERRORS:
            time.sleep(REDIS_RETRY_SECONDS)


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    """Work the training queue until stopped (or, with ``burst``, until it is empty).

    A worker that quits on a Redis error (RQ quits on most) is replaced by a new one once
    Redis answers again; only a stop signal or the end of a burst ends this function."""
    conn = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)
    while True:
        worker = TrainingWorker(
            [queue],
            connection=conn,
            serializer=JSONSerializer,
            name=name,
            job_monitoring_interval=JOB_MONITORING_INTERVAL_SECONDS,
            store=open_store(settings),
        )
        log.info("worker %s on queue %r at %s", worker.name, settings.queue_name, settings.redis_url)
        try:
            worked = worker.work(burst=burst, logging_level=settings.log_level.upper())
        except REDIS_ERRORS as e:  # raised by RQ's teardown when Redis is still away
            log.warning("worker %s quit: Redis unreachable (%s); a new one starts when Redis is back", worker.name, e)
        else:
            if burst or worker.signalled:
                return worked
            log.warning("worker %s quit without a stop signal (see above); a new one starts", worker.name)
        time.sleep(REDIS_RETRY_SECONDS)
        wait_for_redis(conn)
        worker.register_death()  # type: ignore[no-untyped-call]  # so a new worker may take the same name
