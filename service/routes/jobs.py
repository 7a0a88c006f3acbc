"""Training jobs: enqueue on RQ, follow, cancel/stop. Needs Redis; inference does not.

Plain (sync) routes: FastAPI runs them in its thread pool, so a slow or absent
Redis never blocks the event loop that inference runs on.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from service.bounds import TRAIN_BOUNDS
from service.dataset_store import open_datasets
from service.datasets import BUILT_IN, allowed_dataset, is_upload
from service.deps import RedisDep, SettingsDep, TokenDep
from service.errors import (
    Forbidden,
    InvalidInput,
    JobNotCancellable,
    JobNotFound,
    PayloadTooLarge,
    QueueFull,
    QueueUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    problems,
    redact_paths,
)
from service.json_bodies import json_body, json_request_body
from service.schemas import CancelResponse, JobView, TrainAccepted, TrainRequest, dataset_pattern
from service.settings import Settings
from service.training import job_queue

router = APIRouter(prefix="/v1", tags=["training"])

JOB_LINKS = {
    "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/job_id"}},
    "CancelJob": {"operationId": "cancel_job", "parameters": {"job_id": "$response.body#/job_id"}},
}
"""Where a client goes with the job id POST /v1/train answers."""


def training_config(body: Any, settings: Settings) -> tuple[dict[str, Any], bool]:
    """(TrainConfig dict, activate) from a request, within the settings' bounds and data roots;
    InvalidInput naming the field otherwise (nothing is enqueued)."""
    from models.training import TrainConfig

    given = body.model_dump(exclude_unset=True, exclude_none=True)
    activate = bool(given.pop("activate", False))
    for name, bound in TRAIN_BOUNDS.items():
        if name in given:
            bound.check(name, given[name], settings)
    if "dataset" in given:
        spec = given["dataset"]
        directory = spec not in BUILT_IN and not is_upload(spec)
        if directory and settings.data_roots and not re.match(dataset_pattern(settings.data_roots), spec):
            raise InvalidInput("dataset: a DIR below a data root (ATNL_DATA_ROOTS), no '.' or '..' segments", field="dataset")
        uploads = open_datasets(settings)
        given["dataset"] = allowed_dataset(spec, settings.data_roots, uploads.exists)
        if is_upload(spec) and not given.get("image_size"):  # its images' side, within this deployment's
            _, height, width = uploads.describe(spec.partition(":")[2])["image_shape"]
            given["image_size"] = min(height, width, settings.max_image_side)
    try:
        TrainConfig.from_dict(given)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"training config refused: {redact_paths(str(e))}") from e
    return given, activate


@router.post(
    "/train",
    status_code=202,
    response_model=TrainAccepted,
    dependencies=[TokenDep],
    openapi_extra=json_request_body(TrainRequest),
    responses={
        202: {"description": "Enqueued: follow it at status_url.", "links": JOB_LINKS},
        **problems(Unauthorized, Forbidden, PayloadTooLarge, UnsupportedMediaType, InvalidInput, QueueUnavailable, QueueFull),
    },
)
def train(
    body: Annotated[Any, Depends(json_body(TrainRequest))], request: Request, conn: RedisDep, settings: SettingsDep
) -> TrainAccepted:
    """Enqueue a training job (any TrainConfig field; unset or null ones take the library's defaults)."""
    config, activate = training_config(body, settings)
    job = job_queue.enqueue_training(conn, settings, config, activate)
    return TrainAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id).path))


@router.get("/jobs/{job_id}", response_model=JobView, responses=problems(JobNotFound, QueueUnavailable))
def get_job(job_id: str, conn: RedisDep, settings: SettingsDep) -> JobView:
    """Status (queued, started, finished, failed, stopped, canceled), progress, result model id, error.

    A job stays here after it ends, canceled and stopped ones included (DELETE cancels a job, it
    does not remove it), until Redis expires it (ATNL_RESULT_TTL_SECONDS, ATNL_FAILURE_TTL_SECONDS).
    A job "started" whose worker stopped sending heartbeats (ATNL_JOB_HEARTBEAT_TTL_SECONDS) is
    recorded and shown as failed."""
    return JobView(**job_queue.describe(conn, settings, job_id))


@router.delete(
    "/jobs/{job_id}",
    response_model=CancelResponse,
    dependencies=[TokenDep],
    responses={
        200: {
            "description": "Canceled (it never ran) or being stopped. The job stays visible at GET /v1/jobs/{id}.",
            "links": {"GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/id"}}},
        },
        **problems(Unauthorized, Forbidden, JobNotFound, JobNotCancellable, QueueUnavailable),
    },
)
def cancel_job(job_id: str, conn: RedisDep) -> CancelResponse:
    """Cancel a queued job, or stop a running one. The job is not removed: GET /v1/jobs/{id} then shows
    it canceled, or started until the worker stops it and then stopped."""
    return CancelResponse(id=job_id, status=job_queue.cancel(conn, job_id))
