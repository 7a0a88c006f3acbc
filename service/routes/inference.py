"""Inference: encode, decode, interpolate, hallucinate.

Each route parses its typed inputs (multipart form fields with their choices and
defaults, visible in OpenAPI; options may also come in the query string, see
service.forms), calls one ``Engine`` method (service/engine.py),
and formats the record it gets back as JSON or a file.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from models.geometry import Method
from models.hallucination import Strategy
from service.deps import EngineDep, SettingsDep
from service.engine import BatchFormat, HallucinationPlan, MorphFormat, Uploads
from service.forms import SEED_MAX, QueryOptionsRoute, read_uploads, upload_fields
from service.json_bodies import json_body_bytes, json_request_body
from service.schemas import (
    DecodeRequest,
    DecodeResponse,
    EncodeResponse,
    HallucinatedImage,
    HallucinateResponse,
    InterpolateResponse,
)

router = APIRouter(prefix="/v1", tags=["inference"], route_class=QueryOptionsRoute)

IMAGE_UPLOAD = {"contentMediaType": "image/png, image/jpeg"}
PREPROCESS_DOC = (
    "mnist (default): invert light backgrounds, crop to the ink, centre by mass in 20x20 of 28x28; none: grey + resize only."
)

STEPS_DOC = "Frames, endpoints included (default ATNL_DEFAULT_STEPS, 8; at most ATNL_MAX_STEPS, 64)."

Images = Annotated[list[UploadFile], File(description="PNG or JPEG images, any size and mode.", json_schema_extra=IMAGE_UPLOAD)]
Preprocess = Annotated[Literal["mnist", "none"], Form(description=PREPROCESS_DOC)]


def b64(pngs: list[bytes]) -> list[str]:
    return [base64.b64encode(png).decode("ascii") for png in pngs]


def file_response(body: bytes, media_type: str, model_id: str, filename: str | None = None) -> Response:
    headers = {"X-Model-Id": model_id}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(body, media_type=media_type, headers=headers)


@router.post("/encode", response_model=EncodeResponse)
async def encode(engine: EngineDep, settings: SettingsDep, files: Images, preprocess: Preprocess = "mnist") -> EncodeResponse:
    """Images -> unit latent vectors ẑ, one per image."""
    blobs = await read_uploads(files, settings)
    encoded = await engine.encode(Uploads(blobs, upload_fields("files", len(blobs))), preprocess == "mnist")
    return EncodeResponse(model_id=encoded.model_id, latents=encoded.latents.tolist())


@router.post("/decode", response_model=DecodeResponse, openapi_extra=json_request_body(DecodeRequest))
async def decode(request: Request, engine: EngineDep) -> DecodeResponse:
    """Latent vectors -> images (base64 PNG). The body is parsed off the event loop."""
    decoded = await engine.decode(await json_body_bytes(request))
    return DecodeResponse(model_id=decoded.model_id, images=b64(decoded.pngs))


@router.post(
    "/interpolate",
    response_model=InterpolateResponse,
    responses={
        200: {"content": {"image/png": {}, "image/gif": {}}, "description": "JSON frames, or one PNG strip, or an animated GIF."}
    },
)
async def interpolate(
    engine: EngineDep,
    settings: SettingsDep,
    start: Annotated[UploadFile, File(description="First image (ω = 0).", json_schema_extra=IMAGE_UPLOAD)],
    end: Annotated[UploadFile, File(description="Last image (ω = 1).", json_schema_extra=IMAGE_UPLOAD)],
    steps: Annotated[
        int | None,
        Form(ge=2, description="Frames, endpoints included (default ATNL_DEFAULT_STEPS, 8; at most ATNL_MAX_STEPS, 64)."),
    ] = None,
    method: Annotated[Method, Form(description="slerp on the sphere, or lerp.")] = "slerp",
    format: Annotated[MorphFormat, Form(description="json, png (frames side by side) or gif.")] = "json",
    preprocess: Preprocess = "mnist",
) -> Any:
    """Two images -> ``steps`` frames decoded along the path between their latents."""
    blobs = await read_uploads([start], settings, "start") + await read_uploads([end], settings, "end")
    morph = await engine.interpolate(Uploads(blobs, ("start", "end")), steps, method, preprocess == "mnist", format)
    if morph.file is not None:
        return file_response(morph.file, f"image/{format}", morph.model_id)
    return InterpolateResponse(model_id=morph.model_id, method=morph.method, omegas=morph.omegas, frames=b64(morph.pngs))


@router.post(
    "/hallucinate",
    response_model=HallucinateResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "JSON labelled images, or a zip of PNGs plus labels.csv."}
    },
)
async def hallucinate(
    engine: EngineDep,
    settings: SettingsDep,
    files: Images,
    labels: Annotated[list[str], Form(description="One label per image, in upload order: JSON array or comma-separated names.")],
    per_class: Annotated[int | None, Form(ge=1, description="Images to make for every label (give this or n).")] = None,
    n: Annotated[
        int | None, Form(ge=1, description="Images to make in all, split evenly over the labels (give this or per_class).")
    ] = None,
    strategy: Annotated[Strategy | None, Form(description="Default: restyle for atnl models, both for the baselines.")] = None,
    seed: Annotated[int, Form(ge=0, le=SEED_MAX, description="Same seed and inputs, same outputs.")] = 0,
    format: Annotated[BatchFormat, Form(description="json, or zip (PNGs plus labels.csv).")] = "json",
    preprocess: Preprocess = "mnist",
) -> Any:
    """A few labelled images -> new labelled images made by semantic interpolation."""
    blobs = await read_uploads(files, settings)
    plan = HallucinationPlan(per_class, n, strategy, seed, preprocess == "mnist", format)
    made = await engine.hallucinate(Uploads(blobs, upload_fields("files", len(blobs))), labels, plan)
    if made.file is not None:
        return file_response(made.file, "application/zip", made.model_id, "hallucinated.zip")
    items = [
        HallucinatedImage(label=made.label_names[s.label], png=png, sources=s.sources, omega=s.omega)
        for s, png in zip(made.samples, b64(made.pngs), strict=True)
    ]
    return HallucinateResponse(model_id=made.model_id, images=items)
