"""The Playground: the web page at ``/`` and the read-only endpoints it adds to the API.

The page (``service/static``) is a client of the public REST API like any other; the
endpoints here give it, and anyone, the active model's own test images and a map of
their latents (``service.latent_map``), and say how this server guards its mutating
endpoints, so a client knows whether to ask for a token.
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from service import answer_files, latent_map
from service.deps import EngineDep, SettingsDep
from service.errors import InvalidInput, ModelNotReady, problems

if TYPE_CHECKING:
    from service.loaded_model import LoadedModel

router = APIRouter(tags=["playground"])

STATIC = resources.files("service") / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
"""The page's files besides index.html (GET /playground/<name>); nothing else of the package is served."""
PAGE_HEADERS = {
    # Everything from this origin, nothing from anywhere else: the page works offline.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
Png = str
"""A base64-encoded PNG image."""


class Sample(BaseModel):
    index: int = Field(description="Index of the image in the model's data set (one of its data.test_indices).")
    label: str
    png: Png


class SampleList(BaseModel):
    model_id: str
    labels: list[str] = Field(description="The model's label names, in order.")
    samples: list[Sample] = Field(description="Up to per_label test images of each label, grouped by label in label order.")


class MapPoint(BaseModel):
    index: int = Field(description="Data set index of the test image (GET /v1/samples/{index} serves it).")
    label: str
    x: float
    y: float


class Projection(BaseModel):
    """How a unit latent ẑ (d,) is placed on the map (docs: service/latent_map.py)."""

    mean: list[float] = Field(description="Centre of the PCA'd coordinates: ẑ (pca) or ẑ[2:] (order-circle).")
    components: list[list[float]] = Field(description="(2, m) principal directions of those coordinates.")
    explained_variance: list[float] = Field(description="Share of their variance along each component.")
    radius: float = Field(description="order-circle: mean norm ρ̄ of the test latents in the order plane; 1 for pca.")
    style_scale: float = Field(description="order-circle: factor on the style offset; 1 for pca.")


class LabelCentre(BaseModel):
    label: str
    x: float
    y: float


class LatentMapResponse(BaseModel):
    model_id: str
    method: latent_map.MapKind = Field(
        description="order-circle: (x, y) = ρ/ρ̄ · (sin ψ, cos ψ) + style_scale · components @ (ẑ[2:] - mean), "
        "ψ = atan2(ẑ1, ẑ0), ρ = ||ẑ[:2]||, so the order circle is the unit circle; pca: (x, y) = components @ (ẑ - mean)."
    )
    spherical: bool = Field(
        description="The decoder reads unit latents: decoding slerp(ẑa, ẑb; ω) of two POST /v1/encode latents "
        "with POST /v1/decode gives the frame POST /v1/interpolate gives at ω."
    )
    labels: list[str] = Field(description="The model's label names, in order.")
    projection: Projection
    centres: list[LabelCentre] | None = Field(description="Each label's sector centre on the order circle; null for pca.")
    points: list[MapPoint] = Field(description="The test images' latents, placed (at most 100 a label).")


class AuthInfo(BaseModel):
    token_required: bool = Field(
        description="true: POST /v1/train, POST /v1/models/{id}/activate and DELETE /v1/jobs/{id} need "
        "Authorization: Bearer <ATNL_API_TOKEN>; false: no token is set and they answer loopback clients only."
    )


def _asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@router.get("/", include_in_schema=False)
async def page() -> Response:
    """The Playground page."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _asset_route(name: str, media_type: str) -> None:
    async def asset() -> Response:
        return Response(_asset(name), media_type=f"{media_type}; charset=utf-8", headers=PAGE_HEADERS)

    router.add_api_route(f"/playground/{name}", asset, methods=["GET"], include_in_schema=False, name=f"playground_{name}")


for _name, _media_type in ASSETS.items():
    _asset_route(_name, _media_type)


@router.get("/v1/auth", response_model=AuthInfo)
async def auth(settings: SettingsDep) -> AuthInfo:
    """Whether training, activation and job cancel need a bearer token on this server."""
    return AuthInfo(token_required=settings.api_token is not None)


def _sample_list(lm: LoadedModel, per_label: int) -> SampleList:
    test = latent_map.test_images(lm)
    names = lm.label_names
    samples = [
        Sample(
            index=int(test.indices[row]), label=names[k], png=base64.b64encode(answer_files.png_bytes(test.images[row])).decode()
        )
        for k in range(len(names))
        for row in (test.labels == k).nonzero()[0][:per_label]
    ]
    return SampleList(model_id=lm.id, labels=names, samples=samples)


TEST_IMAGE_ERRORS = problems(latent_map.TestImagesUnavailable, InvalidInput, ModelNotReady)


@router.get("/v1/samples", response_model=SampleList, responses=TEST_IMAGE_ERRORS)
async def list_samples(
    engine: EngineDep,
    per_label: Annotated[
        int, Query(ge=1, le=latent_map.MAX_SAMPLES_PER_LABEL, description="Test images to list for each label.")
    ] = 4,
) -> SampleList:
    """A few of the active model's own test images, per label (the first ones of its test split)."""
    lm = engine.current
    return await engine.run(_sample_list, lm, per_label)


def _sample_png(lm: LoadedModel, index: int) -> bytes:
    test = latent_map.test_images(lm)
    row = test.position(index)
    if row is None:
        raise latent_map.TestImagesUnavailable(f"image {index} is not one of model {lm.id}'s mapped test images")
    return answer_files.png_bytes(test.images[row])


@router.get(
    "/v1/samples/{index}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The test image as PNG, as the data set holds it."},
        **TEST_IMAGE_ERRORS,
    },
)
async def get_sample(
    engine: EngineDep, index: Annotated[int, Path(ge=0, description="Data set index, as /v1/samples and /v1/latent-map list.")]
) -> Response:
    """One of the active model's test images (any one the latent map shows)."""
    lm = engine.current
    png = await engine.run(_sample_png, lm, index)
    return Response(png, media_type="image/png", headers={"X-Model-Id": lm.id})


def _map_response(lm: LoadedModel) -> LatentMapResponse:
    layout = latent_map.latent_map(lm)
    test = latent_map.test_images(lm)
    names = lm.label_names
    points = [
        MapPoint(index=int(i), label=names[k], x=round(float(x), 4), y=round(float(y), 4))
        for i, k, (x, y) in zip(test.indices, test.labels, layout.xy, strict=True)
    ]
    centres = None
    if layout.centres is not None:
        centres = [LabelCentre(label=name, x=float(x), y=float(y)) for name, (x, y) in zip(names, layout.centres, strict=True)]
    projection = Projection(
        mean=layout.mean.tolist(),
        components=layout.components.tolist(),
        explained_variance=layout.explained_variance.tolist(),
        radius=layout.radius,
        style_scale=layout.style_scale,
    )
    return LatentMapResponse(
        model_id=lm.id,
        method=layout.kind,
        spherical=lm.model.cfg.spherical,
        labels=names,
        projection=projection,
        centres=centres,
        points=points,
    )


@router.get(
    "/v1/latent-map", response_model=LatentMapResponse, responses=problems(latent_map.TestImagesUnavailable, ModelNotReady)
)
async def get_latent_map(engine: EngineDep) -> LatentMapResponse:
    """The active model's test latents in 2-D, with its order circle; computed once per model."""
    lm = engine.current
    return await engine.run(_map_response, lm)
