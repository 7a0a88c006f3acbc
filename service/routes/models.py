"""The model store: list versions, hot-swap the active one."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path

from service.deps import EngineDep, StoreDep, TokenDep
from service.errors import Forbidden, InvalidInput, ModelNotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType, problems
from service.json_bodies import json_body, json_request_body
from service.model_schemas import ActivateRequest, ActivateResponse, ModelInfo, ModelList, ReplicaInfo
from service.objects import StoreUnavailable
from service.store import MODEL_ID

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelId = Annotated[
    str,
    Path(description="A model id, as GET /v1/models lists them.", json_schema_extra={"pattern": MODEL_ID.pattern}),
]
"""Checked against the pattern by the store (422 'invalid model id'), not here: one check, one message."""


@router.get(
    "",
    response_model=ModelList,
    responses={
        200: {
            "description": "The models, and which one is active.",
            "links": {
                "ActivateTheActiveModel": {
                    "operationId": "activate_model",
                    "parameters": {"model_id": "$response.body#/active"},
                    "description": "Activating the active model again changes nothing.",
                }
            },
        },
        **problems(StoreUnavailable),
    },
)
async def list_models(engine: EngineDep, store: StoreDep) -> ModelList:
    """Every model version in the store, with its metrics, and which one is active."""
    listing = await anyio.to_thread.run_sync(store.listing)  # disk reads stay off the event loop
    loaded = engine.current.id if engine.ready else None
    active = loaded or await anyio.to_thread.run_sync(store.active_id)
    replica = ReplicaInfo(
        id=engine.replica_id, loaded=loaded, store=store.url, store_id=engine.store_id, following=not engine.store_replaced
    )
    return ModelList(active=active, models=[ModelInfo(**m) for m in listing], replica=replica)


@router.post(
    "/{model_id}/activate",
    response_model=ActivateResponse,
    dependencies=[TokenDep],
    openapi_extra=json_request_body(ActivateRequest),
    responses=problems(
        Unauthorized, Forbidden, ModelNotFound, PayloadTooLarge, UnsupportedMediaType, InvalidInput, StoreUnavailable
    ),
)
async def activate_model(
    model_id: ModelId, engine: EngineDep, body: Annotated[ActivateRequest, Depends(json_body(ActivateRequest))]
) -> ActivateResponse:
    """Hot swap: load ``model_id`` completely, then switch to it; requests in flight finish on the old one.

    The body is a JSON object (``{}``): a cross-site form cannot send one."""
    previous = engine.current.id if engine.ready else None
    loaded = await engine.activate(model_id)
    return ActivateResponse(active=loaded.id, previous=previous)
