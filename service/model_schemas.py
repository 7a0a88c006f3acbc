"""Bodies of the model routes (GET /v1/models, POST /v1/models/{id}/activate; docs/API.md §1, §6)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelInfo(BaseModel):
    id: str
    family: str | None
    dataset: str | None = Field(description="The data set it was trained on: a built-in name, folder:DIR or upload:ID.")
    labels: list[str] = Field(description="Its label names, in order (empty for a model that records none).")
    image_shape: list[int] | None = Field(description="[C, H, W] of the images it reads and makes.")
    preprocess: str | None = Field(description="How requests' pictures are prepared unless they say: digits or fit.")
    created_at: str | None
    metrics: dict[str, Any]


class ReplicaInfo(BaseModel):
    id: str = Field(description="The API process that answered (ATNL_REPLICA_ID, else <hostname>:<pid>).")
    loaded: str | None = Field(description="The model it has loaded and serves (null while none is).")
    store: str = Field(description="Its model store: s3://BUCKET/PREFIX, or local for a directory.")
    store_id: str | None = Field(description="The id of the store it started on (null until it first reached the store).")
    following: bool = Field(description="Whether it follows the store's ACTIVE (false once the store was replaced).")


class ModelList(BaseModel):
    active: str | None = Field(description="Id of the model this process serves (null while none is loaded).")
    models: list[ModelInfo]
    replica: ReplicaInfo = Field(description="Which API replica answered, and what it has loaded.")


class ActivateResponse(BaseModel):
    active: str
    previous: str | None


class ActivateRequest(BaseModel):
    """Body of POST /v1/models/{id}/activate: a JSON object (``{}``), so that a cross-site HTML
    form (which cannot send application/json) can never trigger a swap."""

    model_config = ConfigDict(extra="forbid", strict=True)
