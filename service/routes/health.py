"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import EngineDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(engine: EngineDep) -> Health:
    """Liveness: the process answers (whether or not a model is loaded)."""
    return Health(status="ok", model_id=engine.current.id if engine.ready else None)


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "No model loaded yet."}})
async def readyz(engine: EngineDep) -> Response:
    """200 only when a model is loaded and usable, else 503."""
    if not engine.ready:
        return JSONResponse(Health(status="not ready").model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", model_id=engine.current.id).model_dump())


PROMETHEUS_TEXT = CONTENT_TYPE_LATEST.split(";", 1)[0]
"""text/plain: the Prometheus text exposition format (its version and charset are parameters)."""


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format (metric names: docs/API.md, Metrics).",
            "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
        }
    },
)
async def prometheus_metrics() -> Response:
    """Prometheus text format: requests, latency, batch sizes, jobs, model version."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
