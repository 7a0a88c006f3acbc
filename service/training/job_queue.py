"""The API's side of training jobs: enqueue, look up, cancel/stop. Redis errors become QueueUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from service import prometheus
from service.errors import JobNotCancellable, JobNotFound, QueueFull, QueueUnavailable, redact_paths
from service.settings import Settings
from service.store import new_model_id, open_store
from service.training.tasks import CANCELED, HEARTBEAT_KEY, STOP_KEY, train_model

PUBLIC_STATUS = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "stopped",
    JobStatus.CANCELED: "canceled",
}
"""RQ's statuses folded onto the six of docs/API.md §5."""
ENDED = ("finished", "failed", "stopped", "canceled")
STOP_KEY_TTL_SECONDS = 24 * 3600
"""A stop request outlives any reasonable wait between the request and the job seeing it."""


def connect(settings: Settings) -> Redis:
    """A Redis client that fails fast (ATNL_REDIS_TIMEOUT_SECONDS) instead of hanging requests."""
    return Redis.from_url(
        settings.redis_url, socket_connect_timeout=settings.redis_timeout_seconds, socket_timeout=settings.redis_timeout_seconds
    )


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as e:
        raise QueueUnavailable(f"the training queue (Redis) is unreachable: {e}") from e


def training_queue(conn: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)


def enqueue_training(conn: Redis, settings: Settings, config: dict[str, Any], activate: bool) -> Job:
    """Put one training job on the queue; its result will be the new model id."""
    family = str(config.get("family", "atnl"))
    with redis_errors():
        queue = training_queue(conn, settings)
        if queue.count >= settings.max_queued_jobs:
            raise QueueFull(
                f"{queue.count} training jobs are already waiting; the limit is {settings.max_queued_jobs} "
                "(ATNL_MAX_QUEUED_JOBS); try again later",
                retry_after=settings.queue_retry_after_seconds,
            )
        job = queue.enqueue(
            train_model,
            kwargs={
                "config": config,
                "model_id": new_model_id(family),
                "activate": activate,
                "store_id": open_store(settings).store_id(),
            },
            job_timeout=settings.job_timeout_seconds,
            result_ttl=settings.result_ttl_seconds,
            failure_ttl=settings.failure_ttl_seconds,
            meta={"progress": None},
        )
    prometheus.JOBS.labels("enqueued").inc()
    return job


def fetch(conn: Redis, job_id: str) -> Job:
    with redis_errors():
        try:
            return Job.fetch(job_id, connection=conn, serializer=JSONSerializer)
        except (NoSuchJobError, ValueError) as e:
            raise JobNotFound(f"no job {job_id!r}") from e


def error_of(job: Job, meta: dict[str, Any]) -> str | None:
    """Why a job failed: the exception the task recorded, else the last line of RQ's traceback;
    server paths redacted (the worker's log has them)."""
    if meta.get("error"):
        return redact_paths(str(meta["error"]))
    result = job.latest_result()
    if result is not None and result.exc_string:
        lines = [line for line in result.exc_string.strip().splitlines() if line.strip()]
        return redact_paths(lines[-1] if lines else result.exc_string)
    return None


def lost(conn: Redis, settings: Settings, job: Job) -> bool:
    """A started job whose process is gone: no heartbeat, started longer ago than its TTL, and
    Redis up for longer than the TTL too. A heartbeat expires while Redis is down; a job that
    lived through the outage writes it again within a third of the TTL of Redis coming back,
    and must not be called lost in between."""
    ttl = settings.job_heartbeat_ttl_seconds
    started = job.started_at
    if started is None or conn.exists(HEARTBEAT_KEY.format(job_id=job.id)):
        return False
    if (datetime.now(UTC) - started.replace(tzinfo=started.tzinfo or UTC)).total_seconds() <= ttl:
        return False
    return float(conn.info("server").get("uptime_in_seconds", 0)) > ttl


def fail_lost(conn: Redis, settings: Settings, job: Job) -> None:
    """Record a lost job as failed, with the reason, as RQ would had its worker lived to see it,
    and remove what its process left of a checkpoint it was writing when it died."""
    model_id = str(job.kwargs.get("model_id") or "")
    store = open_store(settings)
    written = bool(model_id) and store.exists(model_id)
    if model_id and not written:
        store.remove_partial(model_id)
    outcome = (
        f"its model {model_id} was written, but the job's end was not recorded"
        if written
        else "no model was written; retry the job"
    )
    reason = (
        f"WorkerLost: no heartbeat for over {settings.job_heartbeat_ttl_seconds:g} s "
        f"(ATNL_JOB_HEARTBEAT_TTL_SECONDS): the worker was killed or lost; {outcome}"
    )
    job.meta["error"] = reason
    job.save_meta()
    queue = training_queue(conn, settings)
    with conn.pipeline() as pipe:
        StartedJobRegistry(queue=queue).remove_executions(job, pipeline=pipe)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(queue=queue).add(job, ttl=settings.failure_ttl_seconds, exc_string=reason, pipeline=pipe)
        pipe.execute()
    prometheus.JOBS.labels("lost").inc()


def describe(conn: Redis, settings: Settings, job_id: str) -> dict[str, Any]:
    """id, status, progress, model_id, error of one job (docs/API.md §5); a lost job is failed here."""
    job = fetch(conn, job_id)
    with redis_errors():
        status = PUBLIC_STATUS.get(job.get_status(), "queued")
        if status == "started" and lost(conn, settings, job):
            fail_lost(conn, settings, job)
            status = "failed"
        meta = job.get_meta()
        stop = conn.get(STOP_KEY.format(job_id=job_id))
        if stop == CANCELED.encode() and status in ("started", "failed"):
            status = "canceled"  # canceled as a worker dequeued it: it ends at once, doing nothing
        elif status == "failed" and stop is not None:
            status = "stopped"  # stopped cooperatively: the task raised TrainingStopped
        model_id = meta.get("model_id")
        if status == "finished" and model_id is None:
            model_id = job.return_value()
        error = (
            (error_of(job, meta) or "JobFailed: no reason was recorded (its worker was probably killed)")
            if status == "failed"
            else None
        )
    return {"id": job.id, "status": status, "progress": meta.get("progress"), "model_id": model_id, "error": error}


def cancel(conn: Redis, job_id: str) -> str:
    """Cancel a queued job or stop a running one; returns the status it will end in."""
    job = fetch(conn, job_id)
    with redis_errors():
        status = PUBLIC_STATUS.get(job.get_status(), "queued")
        if status in ENDED:
            raise JobNotCancellable(f"job {job_id} already ended: {status}", job_status=status)
        conn.set(STOP_KEY.format(job_id=job_id), 1, ex=STOP_KEY_TTL_SECONDS)
        if status == "queued":
            try:
                job.cancel()
                # A worker may have taken it off the queue just now: the key tells it (and
                # ``describe``) that the client was answered "canceled".
                conn.set(STOP_KEY.format(job_id=job_id), CANCELED, ex=STOP_KEY_TTL_SECONDS)
                prometheus.JOBS.labels("canceled").inc()
                return "canceled"
            except InvalidJobOperation:
                status = PUBLIC_STATUS.get(job.get_status(), "queued")  # picked up meanwhile
        with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
            send_stop_job_command(conn, job_id, serializer=JSONSerializer)
        prometheus.JOBS.labels("stopped").inc()
        return "stopped"
