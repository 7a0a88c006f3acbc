"""Request and response bodies of the REST API (DESIGN §5). Separate from internals."""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model

from models.families import FAMILIES
from models.losses.angular_triplet_neighbor import MARGIN_SCHEDULES
from models.training import LR_SCHEDULES, TrainConfig
from service.forms import SEED_MAX

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


TRAIN_FIELD_BOUNDS: dict[str, dict[str, Any]] = {
    "family": {"json_schema_extra": {"enum": sorted(FAMILIES)}},
    "lr_schedule": {"json_schema_extra": {"enum": list(LR_SCHEDULES)}},
    "margin_schedule": {"json_schema_extra": {"enum": list(MARGIN_SCHEDULES)}},
    "device": {"json_schema_extra": {"enum": ["auto", "cpu", "cuda"]}},
    "dataset": {"max_length": 1024},
    "epochs": {"ge": 1},  # and <= ATNL_MAX_TRAIN_EPOCHS, checked against the settings
    "batch_size": {"ge": 1},  # and <= ATNL_MAX_TRAIN_BATCH_SIZE
    "latent_dim": {"ge": 1},  # and <= ATNL_MAX_TRAIN_LATENT_DIM
    "threads": {"ge": 0},  # and <= ATNL_MAX_TRAIN_THREADS
    "lr": {"gt": 0, "le": 1},
    "margin": {"ge": 0, "le": math.pi},
    "circle_span": {"gt": 0, "lt": math.pi},
    "style_radius": {"ge": 0, "le": math.pi / 2},
    "order_temperature": {"gt": 0, "le": 100},
    "label_smoothing": {"ge": 0, "lt": 1},
    "test_fraction": {"ge": 0.05, "le": 0.5},
    "seed": {"ge": 0, "le": SEED_MAX},
}
"""Bounds of the training fields POST /v1/train accepts (shown in OpenAPI), beyond the library's own
checks. Loss weights (``*_weight``, ``beta``) are in [0, MAX_LOSS_WEIGHT]; any other number is finite and
within ±MAX_OTHER_NUMBER; any other text at most MAX_OTHER_TEXT characters."""
MAX_LOSS_WEIGHT = 1000.0
"""Largest weight of one loss term over HTTP."""
MAX_OTHER_NUMBER = 1e6
"""Bound of a numeric TrainConfig field that TRAIN_FIELD_BOUNDS does not name (new fields stay bounded)."""
MAX_OTHER_TEXT = 256
"""Longest text of a TrainConfig field that TRAIN_FIELD_BOUNDS does not name."""
TRAIN_SETTING_BOUNDS = {
    "epochs": ("max_train_epochs", "ATNL_MAX_TRAIN_EPOCHS"),
    "batch_size": ("max_train_batch_size", "ATNL_MAX_TRAIN_BATCH_SIZE"),
    "latent_dim": ("max_train_latent_dim", "ATNL_MAX_TRAIN_LATENT_DIM"),
    "threads": ("max_train_threads", "ATNL_MAX_TRAIN_THREADS"),
}
"""Training fields whose upper bound is a setting: field -> (Settings attribute, environment name)."""


def _bounds_of(name: str, kind: Any) -> dict[str, Any]:
    if name in TRAIN_FIELD_BOUNDS:
        bounds = dict(TRAIN_FIELD_BOUNDS[name])
    elif name.endswith("_weight") or name == "beta":
        bounds = {"ge": 0, "le": MAX_LOSS_WEIGHT}
    elif kind in (int, float):
        bounds = {"ge": -MAX_OTHER_NUMBER, "le": MAX_OTHER_NUMBER}
    elif kind is str:
        bounds = {"max_length": MAX_OTHER_TEXT}
    else:
        bounds = {}
    if kind is float:
        bounds["allow_inf_nan"] = False
    if name in TRAIN_SETTING_BOUNDS:
        bounds["description"] = f"at most {TRAIN_SETTING_BOUNDS[name][1]}"
    return bounds


def _train_request_model() -> type[BaseModel]:
    """TrainRequest: every TrainConfig field (optional, the library's defaults apply) plus ``activate``.

    Built from the dataclass so the API documents exactly what the library accepts, each
    field with its bounds (TRAIN_FIELD_BOUNDS)."""
    hints = typing.get_type_hints(TrainConfig)
    spec: dict[str, Any] = {}
    for f in fields(TrainConfig):
        bounds = _bounds_of(f.name, hints[f.name])
        default = f"default {f.default!r}" if f.default is not MISSING else None
        description = "; ".join(x for x in (default, bounds.pop("description", None)) if x) or None
        kind = Literal[tuple(bounds["json_schema_extra"]["enum"])] if "json_schema_extra" in bounds else hints[f.name]
        bounds.pop("json_schema_extra", None)
        if hints[f.name] is int:
            kind = StrictInt  # 2.0, "2" and true are not epochs
        spec[f.name] = (kind | None, Field(None, description=description, **bounds))
    spec["activate"] = (bool, Field(False, description="Make the new model the active one when the job finishes."))
    return create_model("TrainRequest", __config__=ConfigDict(extra="forbid"), **spec)


TrainRequest = _train_request_model()


class ActivateRequest(BaseModel):
    """Body of POST /v1/models/{id}/activate: a JSON object (``{}``), so that a cross-site HTML
    form (which cannot send application/json) can never trigger a swap."""

    model_config = ConfigDict(extra="forbid")
