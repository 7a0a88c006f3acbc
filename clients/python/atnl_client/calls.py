"""What each operation of the API sends and how its answer is read, without any I/O: ``Client`` and
``AsyncClient`` send the same ``Call``s, one synchronously, the other with ``await``.

Encode and decode take the binary tensor path (``application/x-npy``) where the server's
OpenAPI document says the operation takes or answers it (``Capabilities``), and multipart
PNG and JSON otherwise; either answer is read, whatever was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image

from atnl_client.answers import (
    Activation,
    AuthInfo,
    Cancellation,
    Dataset,
    Decoded,
    Encoded,
    Hallucination,
    Health,
    Interpolation,
    JobState,
    LatentMap,
    ModelList,
    Samples,
    TrainAccepted,
)
from atnl_client.images import Array, ImageBatch, array_of_npy, array_of_pils, npy_bytes, pil_of_base64, pil_of_png, pils_of_array

T = TypeVar("T")
NPY = "application/x-npy"
OPENAPI_PATH = "/openapi.json"

OPERATIONS: dict[str, str] = {
    "healthz": "health",
    "readyz": "ready",
    "prometheus_metrics": "metrics",
    "list_models": "models",
    "activate_model": "activate",
    "encode": "encode",
    "decode": "decode",
    "interpolate": "interpolate",
    "hallucinate": "hallucinate",
    "train": "train",
    "get_job": "get_job",
    "cancel_job": "cancel_job",
    "upload_dataset": "upload_dataset",
    "list_datasets": "datasets",
    "get_dataset": "dataset",
    "delete_dataset": "delete_dataset",
    "auth": "auth",
    "list_samples": "samples",
    "get_sample": "sample",
    "get_latent_map": "latent_map",
}
"""Each operationId of the server's OpenAPI document -> the method of Client (and AsyncClient) that calls it."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reader of its answer. ``answers``: error statuses read rather than raised
    (and never retried), such as GET /readyz's 503."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    data: Mapping[str, str | list[str]] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    answers: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Capabilities:
    """Operation paths whose POST the OpenAPI document says takes (``npy_bodies``) or answers
    (``npy_answers``) ``application/x-npy``."""

    npy_bodies: frozenset[str] = frozenset()
    npy_answers: frozenset[str] = frozenset()

    @classmethod
    def of(cls, document: dict[str, Any]) -> Capabilities:
        bodies, answers = set(), set()
        for path, operations in (document.get("paths") or {}).items():
            post = (operations or {}).get("post") or {}
            if NPY in ((post.get("requestBody") or {}).get("content") or {}):
                bodies.add(path)
            if any(NPY in ((r or {}).get("content") or {}) for r in (post.get("responses") or {}).values()):
                answers.add(path)
        return cls(frozenset(bodies), frozenset(answers))

    def accept(self, path: str) -> dict[str, str]:
        return {"Accept": NPY} if path in self.npy_answers else {}


def json_of(kind: Callable[[dict[str, Any]], T]) -> Callable[[httpx.Response], T]:
    return lambda response: kind(response.json())


def is_npy(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).split(";")[0].strip() == NPY


def segment(value: str | int) -> str:
    """A path parameter, escaped so that it stays one segment."""
    return quote(str(value), safe="")


def given(**fields: str | int | None) -> dict[str, str]:
    """Form fields or query parameters that are not None, as text."""
    return {name: str(value) for name, value in fields.items() if value is not None}


def openapi() -> Call[Capabilities]:
    return Call("GET", OPENAPI_PATH, json_of(Capabilities.of))


def healthz() -> Call[Health]:
    return Call("GET", "/healthz", json_of(Health.from_json))


def readyz() -> Call[bool]:
    return Call("GET", "/readyz", lambda response: response.status_code == 200, answers=frozenset({503}))


def prometheus_metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda response: response.text)


def list_models() -> Call[ModelList]:
    return Call("GET", "/v1/models", json_of(ModelList.from_json))


def activate_model(model_id: str) -> Call[Activation]:
    return Call("POST", f"/v1/models/{segment(model_id)}/activate", json_of(Activation.from_json), json={})


def read_encoded(response: httpx.Response) -> Encoded:
    if is_npy(response):
        return Encoded(response.headers["x-model-id"], array_of_npy(response.content).astype(np.float32))
    return Encoded.from_json(response.json())


def encode_images(batch: ImageBatch, model_id: str | None, preprocess: str | None, caps: Capabilities) -> Call[Encoded]:
    """Multipart: each image a ``files`` part (arrays and PIL images as PNG)."""
    fields = given(model_id=model_id, preprocess=preprocess)
    headers = caps.accept("/v1/encode")
    return Call("POST", "/v1/encode", read_encoded, data=fields, files=batch.parts("files"), headers=headers)


def encode_model_input(batch: ImageBatch, images: Array, model_id: str | None, caps: Capabilities) -> Call[Encoded]:
    """Images already in the model's shape, ``images`` (N, C, H, W), taken as the model's input as
    they are: one npy array (uint8 or float32) where the server takes one, else PNG files that are
    only resized (``preprocess=none``, a no-op at the model's size)."""
    if "/v1/encode" not in caps.npy_bodies:
        return encode_images(batch, model_id, "none", caps)
    headers = {"Content-Type": NPY, **caps.accept("/v1/encode")}
    return Call("POST", "/v1/encode", read_encoded, params=given(model_id=model_id), content=npy_bytes(images), headers=headers)


def model_input(batch: ImageBatch, preprocess: str | None) -> Array | None:
    """The images as one (N, C, H, W) array when every one is an array and no ``preprocess`` is asked:
    the candidates for the model's input as they are (if in its shape); else None."""
    return batch.array() if preprocess is None else None


def fits(images: Array, models: ModelList, model_id: str | None) -> bool:
    """Whether (N, C, H, W) ``images`` are in the shape of model ``model_id`` (default: the active one)."""
    model = models.find(model_id)
    return model is not None and model.image_shape == tuple(images.shape[1:])


def latents_array(latents: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """(N, d) float32 from an array or nested list; one vector (d,) is N = 1. ValueError otherwise."""
    array = np.asarray(latents, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"latents are an N×d array or list of N vectors; got shape {'×'.join(map(str, array.shape))}")
    return array


def decode_call(latents: npt.ArrayLike, model_id: str | None, caps: Capabilities, read: Callable[[httpx.Response], T]) -> Call[T]:
    array = latents_array(latents)
    headers = caps.accept("/v1/decode")
    if "/v1/decode" in caps.npy_bodies:
        headers = {"Content-Type": NPY, **headers}
        return Call("POST", "/v1/decode", read, params=given(model_id=model_id), content=npy_bytes(array), headers=headers)
    body: dict[str, Any] = {"latents": array.tolist(), **given(model_id=model_id)}
    return Call("POST", "/v1/decode", read, json=body, headers=headers)


def read_decoded(response: httpx.Response) -> Decoded:
    if is_npy(response):
        return Decoded(response.headers["x-model-id"], pils_of_array(array_of_npy(response.content)))
    return Decoded.from_json(response.json())


def read_decoded_array(response: httpx.Response) -> npt.NDArray[np.float32]:
    if is_npy(response):
        return array_of_npy(response.content).astype(np.float32)
    return array_of_pils([pil_of_base64(png) for png in response.json()["images"]])


def interpolate(
    start: ImageBatch, end: ImageBatch, steps: int | None, method: str, model_id: str | None, preprocess: str | None
) -> Call[Interpolation]:
    fields = given(steps=steps, method=method, model_id=model_id, preprocess=preprocess, format="json")
    files = [start.one("start"), end.one("end")]
    return Call("POST", "/v1/interpolate", json_of(Interpolation.from_json), data=fields, files=files)


@dataclass(frozen=True)
class HallucinationOptions:
    per_class: int | None = None
    n: int | None = None
    strategy: str | None = None
    seed: int = 0
    filter: str | None = None
    model_id: str | None = None
    preprocess: str | None = None


def hallucinate(batch: ImageBatch, labels: Sequence[str | int], options: HallucinationOptions) -> Call[Hallucination]:
    """One ``labels`` field per label, in upload order (a string is sent as it is: the server also
    reads one field of comma-separated names or a JSON array)."""
    o = options
    fields: dict[str, str | list[str]] = {"labels": labels if isinstance(labels, str) else [str(label) for label in labels]}
    fields |= given(per_class=o.per_class, n=o.n, strategy=o.strategy, seed=o.seed, filter=o.filter, format="json")
    fields |= given(model_id=o.model_id, preprocess=o.preprocess)
    return Call("POST", "/v1/hallucinate", json_of(Hallucination.from_json), data=fields, files=batch.parts("files"))


def train(config: dict[str, Any]) -> Call[TrainAccepted]:
    return Call("POST", "/v1/train", json_of(TrainAccepted.from_json), json=config)


def get_job(job_id: str) -> Call[JobState]:
    return Call("GET", f"/v1/jobs/{segment(job_id)}", json_of(JobState.from_json))


def cancel_job(job_id: str) -> Call[Cancellation]:
    return Call("DELETE", f"/v1/jobs/{segment(job_id)}", json_of(Cancellation.from_json))


GZIP_MAGIC = b"\x1f\x8b"


def upload_dataset(archive: str | Path | bytes, filename: str | None) -> Call[Dataset]:
    """One ``archive`` part: a zip or tar.gz, by path or bytes."""
    if isinstance(archive, bytes):
        data = archive
    else:
        data = Path(archive).read_bytes()
        filename = filename or Path(archive).name
    gzipped = data.startswith(GZIP_MAGIC)
    name = filename or ("dataset.tar.gz" if gzipped else "dataset.zip")
    part = (name, data, "application/gzip" if gzipped else "application/zip")
    return Call("POST", "/v1/datasets", json_of(Dataset.from_json), files=[("archive", part)])


def list_datasets() -> Call[list[Dataset]]:
    return Call("GET", "/v1/datasets", lambda response: [Dataset.from_json(d) for d in response.json()["datasets"]])


def get_dataset(dataset_id: str) -> Call[Dataset]:
    return Call("GET", f"/v1/datasets/{segment(dataset_id)}", json_of(Dataset.from_json))


def delete_dataset(dataset_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/datasets/{segment(dataset_id)}", lambda response: None)


def auth() -> Call[AuthInfo]:
    return Call("GET", "/v1/auth", json_of(AuthInfo.from_json))


def list_samples(per_label: int) -> Call[Samples]:
    return Call("GET", "/v1/samples", json_of(Samples.from_json), params=given(per_label=per_label))


def get_sample(index: int) -> Call[Image.Image]:
    return Call("GET", f"/v1/samples/{segment(index)}", lambda response: pil_of_png(response.content))


def get_latent_map() -> Call[LatentMap]:
    return Call("GET", "/v1/latent-map", json_of(LatentMap.from_json))
