"""The model store: list versions, hot-swap the active one."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request

from service.deps import EngineDep, StoreDep, TokenDep
from service.json_bodies import json_body_bytes, json_request_body, parse_json_body
from service.schemas import ActivateRequest, ActivateResponse, ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
async def list_models(engine: EngineDep, store: StoreDep) -> ModelList:
    """Every model version in the store, with its metrics, and which one is active."""
    listing = await anyio.to_thread.run_sync(store.listing)  # disk reads stay off the event loop
    active = engine.current.id if engine.ready else await anyio.to_thread.run_sync(store.active_id)
    return ModelList(active=active, models=[ModelInfo(**m) for m in listing])


@router.post(
    "/{model_id}/activate",
    response_model=ActivateResponse,
    dependencies=[TokenDep],
    openapi_extra=json_request_body(ActivateRequest),
)
async def activate_model(model_id: str, request: Request, engine: EngineDep) -> ActivateResponse:
    """Hot swap: load ``model_id`` completely, then switch to it; requests in flight finish on the old one.

    The body is a JSON object (``{}``): a cross-site form cannot send one."""
    parse_json_body(ActivateRequest, await json_body_bytes(request))
    previous = engine.current.id if engine.ready else None
    loaded = await engine.activate(model_id)
    return ActivateResponse(active=loaded.id, previous=previous)
