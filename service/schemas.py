"""Request and response bodies of the REST API (DESIGN §5). Separate from internals."""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from models.training import TrainConfig

Png = str
"""A base64-encoded PNG image."""


class Health(BaseModel):
    status: Literal["ok", "not ready"]
    model_id: str | None = None


class EncodeResponse(BaseModel):
    model_id: str
    latents: list[list[float]] = Field(description="(N, d) unit vectors, one per uploaded image, in upload order.")


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latents: list[list[float]] = Field(min_length=1, description="(N, d) latent vectors, decoded as given.")


class DecodeResponse(BaseModel):
    model_id: str
    images: list[Png]


class InterpolateResponse(BaseModel):
    model_id: str
    method: Literal["slerp", "lerp"]
    omegas: list[float] = Field(description="ω of each frame, 0 (start) to 1 (end).")
    frames: list[Png]


class HallucinatedImage(BaseModel):
    label: str
    png: Png
    sources: tuple[int, int] = Field(description="Indices (upload order) of the two images interpolated.")
    omega: float


class HallucinateResponse(BaseModel):
    model_id: str
    images: list[HallucinatedImage]


class ModelInfo(BaseModel):
    id: str
    family: str | None
    dataset: str | None
    created_at: str | None
    metrics: dict[str, Any]


class ModelList(BaseModel):
    active: str | None = Field(description="Id of the model this process serves (null while none is loaded).")
    models: list[ModelInfo]


class ActivateResponse(BaseModel):
    active: str
    previous: str | None


class TrainAccepted(BaseModel):
    job_id: str
    status_url: str


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="allow")
    phase: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None


class JobView(BaseModel):
    id: str
    status: Literal["queued", "started", "finished", "failed", "stopped", "canceled"]
    progress: JobProgress | None
    model_id: str | None
    error: str | None


class CancelResponse(BaseModel):
    id: str
    status: Literal["canceled", "stopped"] = Field(
        description="canceled: it never ran; stopped: it was running and is being stopped."
    )


def _train_request_model() -> type[BaseModel]:
    """TrainRequest: every TrainConfig field (optional, the library's defaults apply) plus ``activate``.

    Built from the dataclass so the API documents exactly what the library accepts."""
    hints = typing.get_type_hints(TrainConfig)
    spec: dict[str, Any] = {
        f.name: (hints[f.name] | None, Field(None, description=f"default {f.default!r}" if f.default is not MISSING else None))
        for f in fields(TrainConfig)
    }
    spec["activate"] = (bool, Field(False, description="Make the new model the active one when the job finishes."))
    return create_model("TrainRequest", __config__=ConfigDict(extra="forbid"), **spec)


TrainRequest = _train_request_model()
