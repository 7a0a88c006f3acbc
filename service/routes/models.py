"""The model store: list versions, hot-swap the active one."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import EngineDep, StoreDep, TokenDep
from service.schemas import ActivateResponse, ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
async def list_models(engine: EngineDep, store: StoreDep) -> ModelList:
    """Every model version in the store, with its metrics, and which one is active."""
    models = [ModelInfo(**store.describe(model_id)) for model_id in store.ids()]
    return ModelList(active=engine.current.id if engine.ready else store.active_id(), models=models)


@router.post("/{model_id}/activate", response_model=ActivateResponse, dependencies=[TokenDep])
async def activate_model(model_id: str, engine: EngineDep) -> ActivateResponse:
    """Hot swap: load ``model_id`` completely, then switch to it; requests in flight finish on the old one."""
    previous = engine.current.id if engine.ready else None
    loaded = await engine.activate(model_id)
    return ActivateResponse(active=loaded.id, previous=previous)
