"""RQ job functions: what ``atnl worker`` runs. Thin wrappers around ``models.pipeline``.

Arguments and results are plain JSON (the queue uses RQ's JSONSerializer).
torch is imported inside the job, in the work horse, so the forking worker
parent never initialises CUDA.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job

from service.settings import get_settings
from service.store import ModelStore

log = logging.getLogger("atnl.tasks")
STOP_KEY = "atnl:stop:{job_id}"
"""Redis key a cancel request sets; the job polls it (backs up RQ's stop-job command)."""
STOP_POLL_SECONDS = 1.0
"""Least time between two reads of the stop key during training."""


class WrongModelStore(RuntimeError):
    """The worker's ATNL_MODEL_STORE is not the directory the API that enqueued the job serves from."""


def train_model(config: dict[str, Any], model_id: str, activate: bool = False, store_id: str | None = None) -> str:
    """Train ``config`` (a TrainConfig dict), save it into the store as ``model_id``; return the id.

    ``store_id`` is the API's store id: a worker whose store has another refuses the job
    before training (the model would land where the API never looks).
    Job meta ``progress`` holds epoch, epochs, step, steps, loss and phase, written
    at least once per epoch; ``error`` holds the reason of a failure."""
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig
    from service.cuda_memory import limit_cuda_memory

    settings = get_settings()
    store = ModelStore(settings.model_store).ensure()
    job = get_current_job()
    config = {"device": settings.device, **config}
    last_write = 0.0
    last_poll = 0.0
    stop_requested = False

    def publish(progress: dict[str, Any]) -> None:
        if job is not None:
            job.meta["progress"] = progress
            job.save_meta()

    def on_progress(p: dict[str, Any]) -> None:
        nonlocal last_write
        now = time.monotonic()
        if p["step"] == p["steps"] or now - last_write >= settings.progress_interval_seconds:
            last_write = now
            publish({"phase": "training", **{k: p[k] for k in ("epoch", "epochs", "step", "steps")}, "loss": float(p["loss"])})
            if p["step"] == p["steps"]:
                log.info("job %s: epoch %d/%d loss %.4f", job.id if job else "-", p["epoch"], p["epochs"], p["loss"])

    def should_stop() -> bool:
        nonlocal last_poll, stop_requested
        now = time.monotonic()
        if job is not None and not stop_requested and now - last_poll >= STOP_POLL_SECONDS:
            last_poll = now
            stop_requested = bool(job.connection.exists(STOP_KEY.format(job_id=job.id)))
        return stop_requested

    try:
        if store_id is not None and store.store_id() != store_id:
            raise WrongModelStore(
                f"this worker's model store {store.root} is not the API's (store id {store.store_id()} != {store_id}); "
                "give API and workers the same ATNL_MODEL_STORE"
            )
        if str(config.get("device")) != "cpu":
            limit_cuda_memory(settings.cuda_memory_fraction)
        cfg = TrainConfig.from_dict(config)
        publish({"phase": "loading", "epoch": 0, "epochs": cfg.epochs, "step": 0, "steps": 0, "loss": None})
        path = train_to_checkpoint(cfg, store.path(model_id), on_progress=on_progress, should_stop=should_stop)
    except Exception as e:
        if job is not None:
            job.meta["error"] = f"{type(e).__name__}: {e}"
            job.save_meta()
        raise
    if activate:
        store.set_active(model_id)
    if job is not None:
        job.meta["progress"] = {**job.meta.get("progress", {}), "phase": "done"}
        job.meta["model_id"] = model_id
        job.save_meta()
    log.info("job %s: wrote %s", job.id if job else "-", path)
    return model_id
