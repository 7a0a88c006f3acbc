"""Request and response bodies of the REST API (docs/API.md). Separate from internals.

A field whose bound is a setting or a fact of the active model (most files, the latent
length, the label names) carries a ``bound(...)`` marker; service.openapi writes the
number into the OpenAPI document this deployment serves, so the schema a client sees is
the validation it meets.
"""

from __future__ import annotations

import math
import os
import re
import typing
from dataclasses import MISSING, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, create_model

from models.families import FAMILIES
from models.losses.angular_triplet_neighbor import MARGIN_SCHEDULES
from models.preprocess import PREPROCESSINGS
from models.training import LR_SCHEDULES, TrainConfig
from service.bounds import TRAIN_BOUNDS
from service.datasets import DIRECTORY_KINDS
from service.forms import SEED_MAX

Png = str
"""A base64-encoded PNG image."""
BOUND = "x-bound"
"""JSON-schema key of a bound this deployment fills in (service.openapi.BOUND_FILLERS names each one)."""


def bound(name: str) -> dict[str, Any]:
    """``json_schema_extra`` marking a schema whose bound service.openapi fills in from the settings or model."""
    return {BOUND: name}


def _integral(value: Any) -> Any:
    """2.0 -> 2: JSON Schema's ``integer`` is any number with a zero fraction; other values pass unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(**bounds: Any) -> Any:
    """An integer as JSON Schema means it (2 and 2.0 are, "2", 2.5 and true are not), within ``bounds``
    (ge, le, ...; given here, before the validators, so that they show in the schema)."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral), Strict()]


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body', 'query' or 'path', then the field names and indices.")
    msg: str


class Problem(BaseModel):
    """An error answer (RFC 9457), media type application/problem+json. Every 4xx and 5xx of the API has this shape."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    type: str = Field(description="Always 'about:blank': the title and status say what happened.")
    title: str = Field(description="Short, fixed per kind of error (e.g. 'Invalid input', 'Model not ready').")
    status: int = Field(ge=400, le=599, description="The HTTP status, repeated.")
    detail: str = Field(description="What went wrong with this request and, where it can, what to send instead.")
    instance: str = Field(description="The request path.")
    field: str | None = Field(None, description="The input at fault: a form field, 'files[2]', 'latents', 'body'.")
    errors: list[ValidationIssue] | None = Field(None, description="Validation errors (at most 20), on 422s from validation.")
    job_status: str | None = Field(None, description="On 409 from DELETE /v1/jobs/{id}: the status the job ended in.")


class Health(BaseModel):
    status: Literal["ok", "not ready"]
    model_id: str | None = None


class EncodeResponse(BaseModel):
    model_id: str
    latents: list[list[float]] = Field(description="(N, d) unit vectors, one per uploaded image, in upload order.")


Coordinate = Annotated[float, Field(json_schema_extra=bound("coordinate"))]
Latent = Annotated[list[Coordinate], Field(min_length=1, json_schema_extra=bound("latent"))]


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    latents: list[Latent] = Field(
        min_length=1,
        description="(N, d) latent vectors, decoded as given: d is the active model's latent_dim, N at most "
        "ATNL_MAX_LATENTS, each coordinate within ±ATNL_MAX_LATENT_ABS.",
        json_schema_extra=bound("latents"),
    )
    model_id: str | None = Field(
        None,
        description="The model the latents came from (an encode answer's model_id): 409 if this replica serves "
        "another. The query parameter of the same name does the same.",
        max_length=128,
    )


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
    read: str | None = Field(
        description="The label the model reads in the image (its order head and label reader); null for models "
        "without an order circle, which cannot read labels. With filter=model it is always `label`."
    )


class Disagreement(BaseModel):
    file: int = Field(description="Index (upload order) of the example.")
    given: str = Field(description="The label the request gave it (the one hallucination uses).")
    read: str = Field(description="The label the model reads in it.")
    confidence: float = Field(description="The model's probability of `read`, 0 to 1.")


class SelfCheck(BaseModel):
    checked: bool = Field(description="Whether the model read its images back (only models with an order circle can).")
    filter: Literal["model", "none"]
    replaced: int = Field(description="Images redrawn because the model read them as another label (filter=model).")
    dropped: int = Field(
        description="Images left out because the model still read another label after the redraws (filter=model): "
        "the answer holds that many fewer than asked."
    )
    flagged: int = Field(description="Images kept though the model reads another label (filter=none).")


class HallucinateResponse(BaseModel):
    model_id: str
    strategy: Literal["same", "ordinal", "both", "restyle", "mixed"] = Field(description="The strategy used.")
    images: list[HallucinatedImage]
    disagreements: list[Disagreement] = Field(
        description="The examples the model reads as another label than the one given. Hallucination uses the given "
        "label (atnl models place each example on its label's sector, its style kept); check these examples."
    )
    self_check: SelfCheck
    labels_note: str = Field(description="How the labels of the images were made, and how far to trust them.")


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


TRAIN_CHOICES: dict[str, list[str]] = {
    "family": sorted(FAMILIES),
    "lr_schedule": list(LR_SCHEDULES),
    "margin_schedule": list(MARGIN_SCHEDULES),
    "device": ["auto", "cpu", "cuda"],
    "preprocess": ["auto", *PREPROCESSINGS],
}
"""Training fields that take one of a few names."""
TRAIN_FIELD_BOUNDS: dict[str, dict[str, Any]] = {
    "dataset": {"max_length": 1024},
    "lr": {"gt": 0, "le": 1},
    "margin": {"ge": 0, "le": math.pi},
    "circle_span": {"gt": 0, "lt": math.pi},
    "style_radius": {"ge": 0, "le": math.pi / 2},
    "order_temperature": {"gt": 0, "le": 100},
    "label_smoothing": {"ge": 0, "lt": 1},
    "test_fraction": {"ge": 0.05, "le": 0.5},
    "reader_epochs": {"ge": 0, "le": 100},
    "width": {"ge": 1, "le": 256},
    "seed": {"ge": 0, "le": SEED_MAX},
}
"""Bounds of the training fields POST /v1/train accepts (shown in OpenAPI), beyond the library's own
checks (such as latent_dim >= 3 for a spherical family) and service.bounds.TRAIN_BOUNDS (a setting's maximum).
Loss weights (``*_weight``, ``beta``) are in [0, MAX_LOSS_WEIGHT]; any other number is finite and
within ±MAX_OTHER_NUMBER; any other text at most MAX_OTHER_TEXT characters."""
MAX_LOSS_WEIGHT = 1000.0
"""Largest weight of one loss term over HTTP."""
MAX_OTHER_NUMBER = 1e6
"""Bound of a numeric TrainConfig field that TRAIN_FIELD_BOUNDS does not name (new fields stay bounded)."""
MAX_OTHER_TEXT = 256
"""Longest text of a TrainConfig field that TRAIN_FIELD_BOUNDS does not name."""


def _bounds_of(name: str, kind: Any) -> dict[str, Any]:
    if name in TRAIN_BOUNDS:  # the maximum is this deployment's (service.openapi fills it in)
        bounds = {"ge": TRAIN_BOUNDS[name].minimum, "description": f"at most {TRAIN_BOUNDS[name].env}"}
        bounds["json_schema_extra"] = bound(f"train.{name}")
    elif name in TRAIN_FIELD_BOUNDS:
        bounds = dict(TRAIN_FIELD_BOUNDS[name])
    elif name.endswith("_weight") or name == "beta":
        bounds = {"ge": 0, "le": MAX_LOSS_WEIGHT}
    elif kind in (int, float):
        bounds = {"ge": -MAX_OTHER_NUMBER, "le": MAX_OTHER_NUMBER}
    elif kind is str and name not in TRAIN_CHOICES:
        bounds = {"max_length": MAX_OTHER_TEXT}
    else:
        bounds = {}
    if kind is float:
        bounds["allow_inf_nan"] = False
    if name == "dataset":
        bounds["json_schema_extra"] = bound("dataset")
    return bounds


def dataset_pattern(roots: list[Any]) -> str:
    """The ``mnist-idx:DIR`` / ``folder:DIR`` specs a server with data roots takes: DIR below a root
    (absolute, as configured or resolved) or relative to the first root, no segment all dots."""
    segments = r"(/\.{0,2}[^/.\x00][^/\x00]*)*/?"
    absolute = sorted({re.escape(str(r).rstrip("/")) for root in roots for r in (root, os.path.realpath(root))})
    relative = r"\.{0,2}[^/.\x00][^/\x00]*" + segments
    return rf"^({'|'.join(DIRECTORY_KINDS)}):(({'|'.join(absolute)}){segments}|{relative})$"


def _spherical_latent_dim() -> dict[str, Any]:
    """JSON Schema of TrainConfig's cross-field rule: latent_dim >= 3 when the family (given, or
    the default) is spherical."""
    spherical: list[str | None] = [name for name in sorted(FAMILIES) if FAMILIES[name].spherical]
    condition: dict[str, Any] = {"required": ["family"], "properties": {"family": {"enum": spherical}}}
    if FAMILIES[TrainConfig.family].spherical:  # unset or null: the default family
        condition = {"properties": {"family": {"enum": [*spherical, None]}}}
    return {"if": condition, "then": {"properties": {"latent_dim": {"minimum": 3}}}}


def _train_request_model() -> type[BaseModel]:
    """TrainRequest: every TrainConfig field (optional, the library's defaults apply) plus ``activate``.

    Built from the dataclass so the API documents exactly what the library accepts, each
    field with its bounds (TRAIN_FIELD_BOUNDS). Strict: JSON types as the schema says them
    ("3" is not a number, 1 is not true), integers as JSON Schema means them (json_int)."""
    hints = typing.get_type_hints(TrainConfig)
    spec: dict[str, Any] = {}
    for f in fields(TrainConfig):
        bounds = _bounds_of(f.name, hints[f.name])
        default = f"default {f.default!r}" if f.default is not MISSING else None
        description = "; ".join(x for x in (default, bounds.pop("description", None)) if x) or None
        kind: Any = hints[f.name]
        if f.name in TRAIN_CHOICES:
            kind = Literal[tuple(TRAIN_CHOICES[f.name])]
        elif kind is int:
            kind = json_int(**{k: bounds.pop(k) for k in ("ge", "le") if k in bounds})
        spec[f.name] = (kind | None, Field(None, description=description, **bounds))
    spec["activate"] = (bool, Field(False, description="Make the new model the active one when the job finishes."))
    config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_spherical_latent_dim())
    return create_model("TrainRequest", __config__=config, **spec)


TrainRequest = _train_request_model()
