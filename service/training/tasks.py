"""RQ job functions: what ``atnl worker`` runs. Thin wrappers around ``models.pipeline``.

Arguments and results are plain JSON (the queue uses RQ's JSONSerializer).
torch is imported inside the job, in the work horse, so the forking worker
parent never initialises CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import get_current_job
from rq.job import Job

from service import activation
from service.dataset_store import open_datasets
from service.settings import get_settings
from service.store import open_store

log = logging.getLogger("atnl.tasks")
STOP_KEY = "atnl:stop:{job_id}"
"""Redis key a cancel request sets; the job polls it (backs up RQ's stop-job command). Its value
is CANCELED when the request answered "canceled" (the job was still queued)."""
CANCELED = "canceled"
STOP_POLL_SECONDS = 1.0
"""Least time between two reads of the stop key during training."""
HEARTBEAT_KEY = "atnl:heartbeat:{job_id}"
"""Redis key a running job keeps fresh (TTL ATNL_JOB_HEARTBEAT_TTL_SECONDS); gone = the job's process is gone."""
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
END_PATIENCE_SECONDS = 600.0
"""How long a job that has ended keeps trying to record how (its result, its error) while Redis
is unreachable; its heartbeat goes on meanwhile. Past it the job is lost (WorkerLost)."""
REDIS_RETRY_SECONDS = 1.0
"""Wait between two tries to reach Redis again."""


class Heartbeat:
    """A daemon thread that keeps ``HEARTBEAT_KEY`` of one job alive while training runs.

    Redis errors are logged and retried, never raised: an outage must not kill the training."""

    def __init__(self, conn: Redis, job_id: str, ttl_seconds: float) -> None:
        self.conn, self.key, self.ttl = conn, HEARTBEAT_KEY.format(job_id=job_id), ttl_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.conn.set(self.key, f"{time.time():.3f}", px=max(1, int(self.ttl * 1000)))
            except REDIS_ERRORS as e:
                log.warning("heartbeat of %s not written (Redis unreachable: %s); training goes on", self.key, e)
            if self._stop.wait(self.ttl / 3):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The key is left to expire, not deleted: RQ records how the job ended only after this,
        # and a job "started" without a heartbeat in between would be taken for a lost one.
        self._stop.set()
        self._thread.join(timeout=5)


class JobCanceled(RuntimeError):
    """The job was canceled (DELETE answered "canceled") as a worker took it off the queue."""


class WrongModelStore(RuntimeError):
    """The worker's ATNL_MODEL_STORE is not the directory the API that enqueued the job serves from."""


def train_model(config: dict[str, Any], model_id: str, activate: bool = False, store_id: str | None = None) -> str:
    """Train ``config`` (a TrainConfig dict), save it into the store as ``model_id``; return the id.

    ``store_id`` is the API's store id: a worker whose store has another refuses the job
    before training (the model would land where the API never looks).
    Job meta ``progress`` holds epoch, epochs, step, steps, loss and phase, written
    at least once per epoch; ``error`` holds the reason of a failure."""
    settings = get_settings()
    job = get_current_job()
    if job is not None and job.connection.exists(STOP_KEY.format(job_id=job.id)):
        # Canceled (or stopped) as a worker dequeued it: it does nothing, as the client was told.
        raise JobCanceled(f"job {job.id} was canceled before it started")
    # Beat before the heavy imports below: importing torch alone can outlast a short TTL.
    alive = Heartbeat(job.connection, job.id, settings.job_heartbeat_ttl_seconds) if job is not None else contextlib.nullcontext()
    with alive:
        return _train_model(config, model_id, activate, store_id)


class JobChannel:
    """What a training job says to and hears from Redis: progress (rate-limited), the stop key
    (polled), its error and its result. Redis outages cost an update, never the training."""

    def __init__(self, job: Job | None, progress_interval: float) -> None:
        self.job, self.interval = job, progress_interval
        self.last_write = self.last_poll = 0.0
        self.stop_requested = False

    @property
    def name(self) -> str:
        return self.job.id if self.job is not None else "-"

    def publish(self, progress: dict[str, Any]) -> None:
        if self.job is not None:
            self.job.meta["progress"] = progress
            try:
                self.job.save_meta()
            except REDIS_ERRORS as e:
                log.warning("job %s: progress not saved (Redis unreachable: %s)", self.job.id, e)

    def on_progress(self, p: dict[str, Any]) -> None:
        """``train``'s progress callback: written at each epoch's end and at most every ``interval`` s."""
        now = time.monotonic()
        if p["step"] == p["steps"] or now - self.last_write >= self.interval:
            self.last_write = now
            counts = {k: p[k] for k in ("epoch", "epochs", "step", "steps")}
            self.publish({"phase": "training", **counts, "loss": float(p["loss"])})
            if p["step"] == p["steps"]:
                log.info("job %s: epoch %d/%d loss %.4f", self.name, p["epoch"], p["epochs"], p["loss"])

    def should_stop(self) -> bool:
        """``train``'s stop check: reads the stop key at most every STOP_POLL_SECONDS."""
        now = time.monotonic()
        if self.job is not None and not self.stop_requested and now - self.last_poll >= STOP_POLL_SECONDS:
            self.last_poll = now
            try:
                self.stop_requested = bool(self.job.connection.exists(STOP_KEY.format(job_id=self.job.id)))
            except REDIS_ERRORS as e:  # cannot read a stop request now; ask again at the next poll
                log.warning("job %s: stop key not read (Redis unreachable: %s)", self.job.id, e)
        return self.stop_requested

    def failed(self, e: BaseException) -> None:
        if self.job is not None:
            self.job.meta["error"] = f"{type(e).__name__}: {e}"
            self._record("error")

    def finished(self, model_id: str) -> None:
        if self.job is not None:
            self.job.meta["progress"] = {**(self.job.meta.get("progress") or {}), "phase": "done"}
            self.job.meta["model_id"] = model_id
            self._record("result")

    def _record(self, what: str) -> None:
        """Save the job's meta, waiting up to END_PATIENCE_SECONDS for Redis: how a job ended
        must outlive a Redis restart at that moment."""
        assert self.job is not None
        deadline = time.monotonic() + END_PATIENCE_SECONDS
        while True:
            try:
                self.job.save_meta()
                return
            except REDIS_ERRORS as e:
                if time.monotonic() > deadline:
                    raise
                log.warning("job %s: %s not recorded yet (Redis unreachable: %s); trying again", self.job.id, what, e)
                time.sleep(REDIS_RETRY_SECONDS)


def _train_model(config: dict[str, Any], model_id: str, activate: bool, store_id: str | None) -> str:
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig
    from service.cuda_memory import limit_cuda_memory

    settings = get_settings()
    store = open_store(settings).ensure()
    channel = JobChannel(get_current_job(), settings.progress_interval_seconds)
    config = {"device": settings.device, **config}
    try:
        if store_id is not None and store.store_id() != store_id:
            raise WrongModelStore(
                f"this worker's model store {settings.model_store} is not the API's (store id {store.store_id()} != {store_id}); "
                "give API and workers the same ATNL_MODEL_STORE"
            )
        if str(config.get("device")) != "cpu":
            limit_cuda_memory(settings.cuda_memory_fraction)
        cfg = TrainConfig.from_dict(config)
        channel.publish({"phase": "loading", "epoch": 0, "epochs": cfg.epochs, "step": 0, "steps": 0, "loss": None})
        uploads = open_datasets(settings).upload_root(cfg.dataset)  # an upload:ID data set, downloaded first from S3
        with store.writing(model_id) as out:  # published (uploaded, model.json last) when training ends well
            train_to_checkpoint(
                cfg, out, on_progress=channel.on_progress, should_stop=channel.should_stop, upload_root=uploads
            )  # model.json keeps an upload's labels and counts
        if activate:
            activation.activate(store, model_id, settings.redis_url if settings.redis_activation_channel else None)
    except Exception as e:
        channel.failed(e)
        raise
    channel.finished(model_id)
    log.info("job %s: wrote %s to %s", channel.name, model_id, store.url)
    return model_id
