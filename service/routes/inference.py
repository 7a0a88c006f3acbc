"""Inference: encode, decode, interpolate, hallucinate.

Each route parses its typed inputs (multipart form fields with their choices,
defaults and bounds, visible in OpenAPI; options may also come in the query string,
see service.forms), calls one ``Engine`` method (service/engine.py),
and formats the record it gets back as JSON or a file. Each route lists the errors
it can give (``problems``); bounds that are settings or facts of the model are
``limit`` markers that service.openapi fills in.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from models.geometry import Method
from models.hallucination import Filter, Strategy, labels_note
from service.batching import InferenceQueueFull
from service.bounds import HALLUCINATE_N, STEPS
from service.deps import EngineDep
from service.engine import Engine
from service.errors import BadImage, InvalidInput, ModelMismatch, ModelNotReady, PayloadTooLarge, UnsupportedMediaType, problems
from service.forms import SEED_MAX, QueryOptionsRoute, read_uploads, upload_fields
from service.json_bodies import json_body_bytes, json_request_body
from service.loaded_model import BatchFormat, Encoded, Hallucination, HallucinationPlan, LoadedModel, MorphFormat, Uploads
from service.schemas import (
    DecodeRequest,
    DecodeResponse,
    Disagreement,
    EncodeResponse,
    HallucinatedImage,
    HallucinateResponse,
    InterpolateResponse,
    SelfCheck,
    bound,
)
from service.store import MODEL_ID
from service.tensors import NPY, NPY_BODIES, npy_answer, read_npy, sends_npy, wants_npy

router = APIRouter(prefix="/v1", tags=["inference"], route_class=QueryOptionsRoute)

IMAGE_TYPES = "image/png, image/jpeg"
"""Media types of an image part (its Content-Type is not checked: the bytes are)."""
PREPROCESS_DOC = (
    "model (default): the active model's own (GET /v1/models/active: preprocess); digits: invert light backgrounds, "
    "crop to the ink, centre by mass in 20/28 of the side (mnist is the same); fit: centre crop to a square and "
    "resize, colour kept; none: resize only."
)
STEPS_DOC = f"Frames, endpoints included (default {STEPS.default_env}; at most {STEPS.env})."
IMAGE_DOC = "A PNG or JPEG image (image/png, image/jpeg), any size and mode, with some ink on it; at most ATNL_MAX_UPLOAD_BYTES."
IMAGE_ERROR_KINDS = (400, PayloadTooLarge, ModelMismatch, InvalidInput, BadImage, ModelNotReady)
"""What a multipart inference route can answer besides 200 (encode also InferenceQueueFull: it is batched)."""
IMAGE_ERRORS = problems(*IMAGE_ERROR_KINDS)
FILE_HEADERS = {
    "X-Model-Id": {"description": "The model that answered (file formats only).", "schema": {"type": "string"}},
    "Content-Disposition": {"description": "attachment; filename=... (zip only).", "schema": {"type": "string"}},
}


def only(given: str, left_out: str) -> dict[str, Any]:
    """JSON Schema of a form that gives ``given`` and not ``left_out``."""
    return {"required": [given], "properties": {left_out: False}}


Images = Annotated[
    list[UploadFile],
    File(min_length=1, description=f"{IMAGE_DOC} One or more, at most ATNL_MAX_FILES.", json_schema_extra=bound("files")),
]
Preprocess = Annotated[Literal["model", "digits", "fit", "none", "mnist"], Form(description=PREPROCESS_DOC)]
PIN_DOC = (
    "Optional: the model the caller expects (an earlier answer's model_id). If this replica serves another one, "
    "the answer is 409 naming it, so latents are never decoded, nor images labelled, by a model that did not make them."
)
PIN_PATTERN = MODEL_ID.pattern
PinnedModel = Annotated[str | None, Form(description=PIN_DOC, pattern=PIN_PATTERN)]


def multipart(*images: str, **constraints: Any) -> dict[str, Any]:
    """``openapi_extra`` of a multipart route: the media types of its image parts, and JSON Schema
    keywords over the whole form (``oneOf`` ...), which service.openapi moves into the form's schema."""
    media: dict[str, Any] = {"encoding": {name: {"contentType": IMAGE_TYPES} for name in images}}
    if constraints:
        media["schema"] = constraints
    return {"requestBody": {"content": {"multipart/form-data": media}}}


def file_answer(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that answers JSON or, by ``format``, a file of one of ``media_types``."""
    files = {media: {"schema": {"type": "string", "format": "binary"}} for media in media_types}
    return {200: {"description": description, "content": files, "headers": FILE_HEADERS}}


def b64(pngs: list[bytes]) -> list[str]:
    return [base64.b64encode(png).decode("ascii") for png in pngs]


def file_response(body: bytes, media_type: str, model_id: str, filename: str | None = None) -> Response:
    headers = {"X-Model-Id": model_id}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(body, media_type=media_type, headers=headers)


NPY_BODY = {"schema": {"type": "string", "format": "binary"}}
NPY_ANSWER = {"X-Model-Id": FILE_HEADERS["X-Model-Id"]}


def with_npy_body(extra: dict[str, Any], description: str) -> dict[str, Any]:
    """``openapi_extra`` that also documents an ``application/x-npy`` request body (service.tensors)."""
    content = extra["requestBody"]["content"]
    npy = {"schema": {**NPY_BODY["schema"], "description": description}}
    return {"requestBody": {**extra["requestBody"], "content": {**content, NPY: npy}}}


def npy_or_json(description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that answers JSON, or an .npy array when asked (``Accept: application/x-npy``)."""
    return {200: {"description": description, "content": {NPY: NPY_BODY}, "headers": NPY_ANSWER}}


@router.post(
    "/encode",
    response_model=EncodeResponse,
    openapi_extra=with_npy_body(
        multipart("files"),
        "An N x C x H x W uint8 (0..255) or float32 (0..1) array in the model's shape, not preprocessed; "
        "at most ATNL_MAX_FILES images. The query parameter model_id pins the model.",
    ),
    responses={
        **npy_or_json("Unit latents: JSON, or with Accept: application/x-npy an N x d float32 array."),
        **problems(*IMAGE_ERROR_KINDS, InferenceQueueFull),
    },
)
async def encode(
    request: Request, engine: EngineDep, files: Images, preprocess: Preprocess = "model", model_id: PinnedModel = None
) -> Any:
    """Images -> unit latent vectors ẑ, one per image."""
    blobs = await read_uploads(files)
    encoded = await engine.encode(Uploads(blobs, upload_fields("files", len(blobs))), preprocess, model_id)
    return encoded_answer(request, encoded)


def encoded_answer(request: Request, encoded: Encoded) -> Any:
    if wants_npy(request):
        return npy_answer(encoded.latents, encoded.model_id)
    return EncodeResponse(model_id=encoded.model_id, latents=encoded.latents.tolist())


async def encode_npy(request: Request) -> Response:
    """POST /v1/encode with an application/x-npy body (the binary tensor path)."""
    engine: Engine = request.app.state.engine
    model_id = request.query_params.get("model_id")
    if model_id is not None and not MODEL_ID.match(model_id):
        raise InvalidInput(f"invalid model id {model_id[:64]!r}", field="model_id")
    array = read_npy(await request.body(), "body")
    answer = encoded_answer(request, await engine.encode_array(array, model_id))
    return answer if isinstance(answer, Response) else JSONResponse(answer.model_dump())


NPY_BODIES["/v1/encode"] = encode_npy


@router.post(
    "/decode",
    response_model=DecodeResponse,
    openapi_extra=with_npy_body(json_request_body(DecodeRequest), "An N x d float32 array of latents."),
    responses={
        **npy_or_json("Images: JSON base64 PNGs, or with Accept: application/x-npy an N x C x H x W float32 array in [0, 1]."),
        **problems(PayloadTooLarge, UnsupportedMediaType, ModelMismatch, InvalidInput, ModelNotReady, InferenceQueueFull),
    },
)
async def decode(
    request: Request,
    engine: EngineDep,
    model_id: Annotated[str | None, Query(description=PIN_DOC + " May also be given in the body.", pattern=PIN_PATTERN)] = None,
) -> Any:
    """Latent vectors -> images (base64 PNG, or an .npy array). The body is parsed off the event loop."""
    if sends_npy(request) or wants_npy(request):
        body = await request.body() if sends_npy(request) else await json_body_bytes(request)
        made, images = await engine.decode_array(body, sends_npy(request), model_id)
        if wants_npy(request):
            return npy_answer(images, made)
        pngs = await engine.run(LoadedModel.pngs, images)  # finite: decode_array checked
        if isinstance(pngs, InvalidInput):
            raise pngs
        return DecodeResponse(model_id=made, images=b64(pngs))
    decoded = await engine.decode(await json_body_bytes(request), model_id)
    return DecodeResponse(model_id=decoded.model_id, images=b64(decoded.pngs))


@router.post(
    "/interpolate",
    response_model=InterpolateResponse,
    openapi_extra=multipart("start", "end"),
    responses={**file_answer("JSON frames, or one PNG strip, or an animated GIF.", "image/png", "image/gif"), **IMAGE_ERRORS},
)
async def interpolate(
    engine: EngineDep,
    start: Annotated[UploadFile, File(description=f"First image (ω = 0). {IMAGE_DOC}")],
    end: Annotated[UploadFile, File(description=f"Last image (ω = 1). {IMAGE_DOC}")],
    steps: Annotated[int | None, Form(ge=STEPS.minimum, description=STEPS_DOC, json_schema_extra=bound("steps"))] = None,
    method: Annotated[Method, Form(description="slerp on the sphere, or lerp.")] = "slerp",
    format: Annotated[MorphFormat, Form(description="json, png (frames side by side) or gif.")] = "json",
    preprocess: Preprocess = "model",
    model_id: PinnedModel = None,
) -> Any:
    """Two images -> ``steps`` frames decoded along the path between their latents."""
    blobs = await read_uploads([start], "start") + await read_uploads([end], "end")
    morph = await engine.interpolate(Uploads(blobs, ("start", "end")), steps, method, preprocess, format, model_id)
    if morph.file is not None:
        return file_response(morph.file, f"image/{format}", morph.model_id)
    return InterpolateResponse(model_id=morph.model_id, method=morph.method, omegas=morph.omegas, frames=b64(morph.pngs))


@router.post(
    "/hallucinate",
    response_model=HallucinateResponse,
    openapi_extra=multipart("files", oneOf=[only("per_class", "n"), only("n", "per_class")]),
    responses={**file_answer("JSON labelled images, or a zip of PNGs plus labels.csv.", "application/zip"), **IMAGE_ERRORS},
)
async def hallucinate(
    engine: EngineDep,
    files: Images,
    labels: Annotated[
        list[str],
        Form(
            min_length=1,
            description="One label per image, in upload order, one name per field. One field may also hold them "
            'all, as a JSON array (["0", "3"]) or comma-separated ("0,3").',
            json_schema_extra=bound("labels"),
        ),
    ],
    per_class: Annotated[
        int | None,
        Form(
            ge=1,
            description="Images to make for every label (give this or n); at most ATNL_MAX_HALLUCINATE_N / labels of the model.",
            json_schema_extra=bound("per_class"),
        ),
    ] = None,
    n: Annotated[
        int | None,
        Form(
            ge=HALLUCINATE_N.minimum,
            description="Images to make in all, split evenly over the labels (give this or per_class); "
            f"at most {HALLUCINATE_N.env}.",
            json_schema_extra=bound("n"),
        ),
    ] = None,
    strategy: Annotated[Strategy | None, Form(description="Default: restyle for atnl models, both for the baselines.")] = None,
    seed: Annotated[int, Form(ge=0, le=SEED_MAX, description="Same seed and inputs, same outputs.")] = 0,
    format: Annotated[BatchFormat, Form(description="json, or zip (PNGs, labels.csv and disagreements.csv).")] = "json",
    preprocess: Preprocess = "model",
    filter: Annotated[
        Filter,
        Form(
            description="model (default): the model reads every image made; one it reads as another label is redrawn, "
            "or left out if still misread (self_check.dropped). none: kept, its `read` says what the model sees."
        ),
    ] = "model",
    model_id: PinnedModel = None,
) -> Any:
    """A few labelled images -> new labelled images made by semantic interpolation."""
    blobs = await read_uploads(files)
    plan = HallucinationPlan(per_class, n, strategy, seed, preprocess, format, filter)
    made = await engine.hallucinate(Uploads(blobs, upload_fields("files", len(blobs))), labels, plan, model_id)
    if made.file is not None:
        return file_response(made.file, "application/zip", made.model_id, "hallucinated.zip")
    return hallucination_answer(made, filter)


def hallucination_answer(made: Hallucination, filter: Filter) -> HallucinateResponse:
    """The JSON answer of a hallucinate request: label names for indices, base64 PNGs, what the model read."""
    names, result = made.label_names, made.made
    items = [
        HallucinatedImage(
            label=names[s.label], png=png, sources=s.sources, omega=s.omega, read=None if s.read is None else names[s.read]
        )
        for s, png in zip(result.samples, b64(made.pngs), strict=True)
    ]
    disagreements = [
        Disagreement(file=d.index, given=names[d.given], read=names[d.read], confidence=d.confidence)
        for d in result.disagreements
    ]
    check = SelfCheck(
        checked=result.checked, filter=filter, replaced=result.replaced, dropped=result.dropped, flagged=result.flagged
    )
    return HallucinateResponse(
        model_id=made.model_id,
        strategy=made.strategy,
        images=items,
        disagreements=disagreements,
        self_check=check,
        labels_note=labels_note(made.strategy, result.checked),
    )
