"""Inference: encode, decode, interpolate, hallucinate. Parse, call the engine, format."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from models.hallucination import default_strategy
from service import engine as inference
from service import imaging, metrics
from service.deps import EngineDep, SettingsDep
from service.errors import InvalidInput, PayloadTooLarge
from service.forms import (
    PREPROCESS,
    SEED_MAX,
    bounded,
    choice,
    option,
    parse_labels,
    read_uploads,
    upload_fields,
)
from service.json_bodies import json_body_bytes, json_request_body, parse_json_body
from service.schemas import (
    DecodeRequest,
    DecodeResponse,
    EncodeResponse,
    HallucinatedImage,
    HallucinateResponse,
    InterpolateResponse,
)

router = APIRouter(prefix="/v1", tags=["inference"])

IMAGE_UPLOAD = {"contentMediaType": "image/png, image/jpeg"}
PREPROCESS_DOC = (
    "mnist (default): invert light backgrounds, crop to the ink, centre by mass in 20x20 of 28x28; none: grey + resize only."
)


def b64png(images: np.ndarray) -> list[str]:
    return [base64.b64encode(imaging.png_bytes(im)).decode("ascii") for im in images]


Images = Annotated[list[UploadFile], File(description="PNG or JPEG images, any size and mode.", json_schema_extra=IMAGE_UPLOAD)]
Preprocess = Annotated[str | None, Form(description=PREPROCESS_DOC)]


@router.post("/encode", response_model=EncodeResponse)
async def encode(
    request: Request, engine: EngineDep, settings: SettingsDep, files: Images, preprocess: Preprocess = None
) -> EncodeResponse:
    """Images -> unit latent vectors ẑ, one per image."""
    mode = choice("preprocess", option(request, "preprocess", preprocess, str, "mnist"), PREPROCESS)
    blobs = await read_uploads(files, settings)
    lm = engine.current
    images = await engine.load_images(lm, blobs, upload_fields("files", len(blobs)), preprocess=mode == "mnist")
    metrics.BATCH_SIZE.labels("encode").observe(len(images))
    latents = await engine.run(inference.encode_images, lm, images, op="encode")
    return EncodeResponse(model_id=lm.id, latents=latents.tolist())


@router.post("/decode", response_model=DecodeResponse, openapi_extra=json_request_body(DecodeRequest))
async def decode(request: Request, engine: EngineDep, settings: SettingsDep) -> DecodeResponse:
    """Latent vectors -> images (base64 PNG). The body is parsed off the event loop."""
    body = await engine.run(parse_json_body, DecodeRequest, await json_body_bytes(request))
    if len(body.latents) > settings.max_latents:
        raise PayloadTooLarge(
            f"{len(body.latents)} latents sent; the limit is {settings.max_latents} (ATNL_MAX_LATENTS)", field="latents"
        )
    if len({len(z) for z in body.latents}) != 1:
        raise InvalidInput("every latent vector must have the same length", field="latents")
    lm = engine.current
    metrics.BATCH_SIZE.labels("decode").observe(len(body.latents))
    latents = await engine.run(np.asarray, body.latents, np.float64)
    images = await engine.run(inference.decode_latents, lm, latents, settings.max_latent_abs, op="decode")
    return DecodeResponse(model_id=lm.id, images=await engine.run(b64png, images))


@router.post(
    "/interpolate",
    response_model=InterpolateResponse,
    responses={
        200: {"content": {"image/png": {}, "image/gif": {}}, "description": "JSON frames, or one PNG strip, or an animated GIF."}
    },
)
async def interpolate(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    start: Annotated[UploadFile, File(description="First image (ω = 0).", json_schema_extra=IMAGE_UPLOAD)],
    end: Annotated[UploadFile, File(description="Last image (ω = 1).", json_schema_extra=IMAGE_UPLOAD)],
    steps: Annotated[int | None, Form(description="Frames, endpoints included (default 8).")] = None,
    method: Annotated[str | None, Form(description="slerp (default) or lerp.")] = None,
    format: Annotated[str | None, Form(description="json (default), png (frames side by side) or gif.")] = None,
    preprocess: Preprocess = None,
) -> Any:
    """Two images -> ``steps`` frames decoded along the path between their latents."""
    steps = option(request, "steps", steps, int, settings.default_steps)
    method = choice("method", option(request, "method", method, str, "slerp"), inference.METHODS)
    fmt = choice("format", option(request, "format", format, str, "json"), ("json", "png", "gif"))
    mode = choice("preprocess", option(request, "preprocess", preprocess, str, "mnist"), PREPROCESS)
    if not 2 <= steps <= settings.max_steps:
        raise InvalidInput(f"steps must be between 2 and {settings.max_steps} (ATNL_MAX_STEPS), got {steps}", field="steps")
    blobs = await read_uploads([start], settings, "start") + await read_uploads([end], settings, "end")
    lm = engine.current
    images = await engine.load_images(lm, blobs, ("start", "end"), preprocess=mode == "mnist")
    metrics.BATCH_SIZE.labels("interpolate").observe(steps)
    omegas, frames = await engine.run(inference.interpolate_images, lm, images[0], images[1], steps, method, op="interpolate")
    if fmt == "png":
        return Response(await engine.run(imaging.png_strip, list(frames)), media_type="image/png", headers={"X-Model-Id": lm.id})
    if fmt == "gif":
        gif = await engine.run(imaging.gif_bytes, list(frames), settings.gif_frame_ms)
        return Response(gif, media_type="image/gif", headers={"X-Model-Id": lm.id})
    return InterpolateResponse(model_id=lm.id, method=method, omegas=omegas.tolist(), frames=await engine.run(b64png, frames))  # type: ignore[arg-type]


@router.post(
    "/hallucinate",
    response_model=HallucinateResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "JSON labelled images, or a zip of PNGs plus labels.csv."}
    },
)
async def hallucinate(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    files: Images,
    labels: Annotated[list[str], Form(description="One label per image, in upload order: JSON array or comma-separated names.")],
    per_class: Annotated[int | None, Form(description="Images to make for every label.")] = None,
    n: Annotated[int | None, Form(description="Images to make in all, split evenly over the labels.")] = None,
    strategy: Annotated[
        str | None, Form(description="restyle (default for atnl models; both for the baselines), same, ordinal, both or mixed.")
    ] = None,
    seed: Annotated[int | None, Form(ge=0, le=SEED_MAX, description="Same seed and inputs, same outputs (default 0).")] = None,
    format: Annotated[str | None, Form(description="json (default) or zip.")] = None,
    preprocess: Preprocess = None,
) -> Any:
    """A few labelled images -> new labelled images made by semantic interpolation."""
    per_class = option(request, "per_class", per_class, int, None)
    n = option(request, "n", n, int, None)
    strategy = option(request, "strategy", strategy, str, None)
    seed = bounded("seed", option(request, "seed", seed, int, 0), 0, SEED_MAX)
    fmt = choice("format", option(request, "format", format, str, "json"), ("json", "zip"))
    mode = choice("preprocess", option(request, "preprocess", preprocess, str, "mnist"), PREPROCESS)
    lm = engine.current  # once: labels are checked against, and images encoded by, this model
    strategy = choice("strategy", strategy or default_strategy(lm.model), inference.HALLUCINATION_STRATEGIES)
    if per_class is None and n is None:
        raise InvalidInput("give per_class or n", field="per_class")
    if per_class is not None and n is not None:
        raise InvalidInput("give per_class or n, not both", field="per_class")
    total = n if n is not None else (per_class or 0) * len(lm.label_names)
    if total < 1 or total > settings.max_hallucinate_n:
        raise InvalidInput(
            f"asks for {total} images; allowed 1..{settings.max_hallucinate_n} (ATNL_MAX_HALLUCINATE_N)",
            field="n" if n is not None else "per_class",
        )
    blobs = await read_uploads(files, settings)
    label_idx = parse_labels(labels, lm.label_names, len(blobs))
    images = await engine.load_images(lm, blobs, upload_fields("files", len(blobs)), preprocess=mode == "mnist")
    metrics.BATCH_SIZE.labels("hallucinate").observe(total)
    made = await engine.run(inference.hallucinate_images, lm, images, label_idx, per_class, n, strategy, seed, op="hallucinate")
    names = [lm.label_names[k] for k in made.labels]
    if fmt == "zip":
        samples = [
            imaging.LabelledImage(im, name, src, w)
            for im, name, src, w in zip(made.images, names, made.sources, made.omegas, strict=True)
        ]
        archive = await engine.run(imaging.zip_bytes, samples)
        headers = {"Content-Disposition": 'attachment; filename="hallucinated.zip"', "X-Model-Id": lm.id}
        return Response(archive, media_type="application/zip", headers=headers)
    pngs = await engine.run(b64png, made.images)
    items = [
        HallucinatedImage(label=name, png=png, sources=src, omega=w)
        for name, png, src, w in zip(names, pngs, made.sources, made.omegas, strict=True)
    ]
    return HallucinateResponse(model_id=lm.id, images=items)
