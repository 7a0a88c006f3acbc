"""Training jobs: enqueue on RQ, follow, cancel/stop. Needs Redis; inference does not.

Plain (sync) routes: FastAPI runs them in its thread pool, so a slow or absent
Redis never blocks the event loop that inference runs on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service import jobs
from service.datasets import allowed_dataset
from service.deps import RedisDep, SettingsDep, TokenDep
from service.errors import InvalidInput, redact_paths
from service.schemas import TRAIN_SETTING_BOUNDS, CancelResponse, JobView, TrainAccepted, TrainRequest
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["training"])


def training_config(body: Any, settings: Settings) -> tuple[dict[str, Any], bool]:
    """(TrainConfig dict, activate) from a request, within the settings' bounds and data roots;
    InvalidInput naming the field otherwise (nothing is enqueued)."""
    from models.training import TrainConfig

    given = body.model_dump(exclude_unset=True, exclude_none=True)
    activate = bool(given.pop("activate", False))
    for name, (attr, env) in TRAIN_SETTING_BOUNDS.items():
        limit = getattr(settings, attr)
        if name in given and given[name] > limit:
            raise InvalidInput(f"{name} must be <= {limit} ({env}), got {given[name]}", field=name)
    if "dataset" in given:
        given["dataset"] = allowed_dataset(given["dataset"], settings.data_roots)
    try:
        cfg = TrainConfig.from_dict(given)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"training config refused: {redact_paths(str(e))}") from e
    if cfg.epochs > settings.max_train_epochs:
        raise InvalidInput(
            f"epochs must be <= {settings.max_train_epochs} (ATNL_MAX_TRAIN_EPOCHS), got {cfg.epochs}", field="epochs"
        )
    return given, activate


@router.post("/train", status_code=202, response_model=TrainAccepted, dependencies=[TokenDep])
def train(body: TrainRequest, request: Request, conn: RedisDep, settings: SettingsDep) -> TrainAccepted:  # type: ignore[valid-type]
    """Enqueue a training job (any TrainConfig field; unset ones take the library's defaults)."""
    config, activate = training_config(body, settings)
    job = jobs.enqueue_training(conn, settings, config, activate)
    return TrainAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id).path))


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: str, conn: RedisDep, settings: SettingsDep) -> JobView:
    """Status (queued, started, finished, failed, stopped, canceled), progress, result model id, error.

    A job "started" whose worker stopped sending heartbeats (ATNL_JOB_HEARTBEAT_TTL_SECONDS) is
    recorded and shown as failed."""
    return JobView(**jobs.describe(conn, settings, job_id))


@router.delete("/jobs/{job_id}", response_model=CancelResponse, dependencies=[TokenDep])
def cancel_job(job_id: str, conn: RedisDep) -> CancelResponse:
    """Cancel a queued job, or stop a running one."""
    return CancelResponse(id=job_id, status=jobs.cancel(conn, job_id))
