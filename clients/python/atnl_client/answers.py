"""The server's answers as typed records (docs/API.md §2), read from their JSON: images as PIL
images, latents as numpy arrays, everything else as the server says it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from atnl_client.images import pil_of_base64

JOB_ENDED = frozenset({"finished", "failed", "stopped", "canceled"})
"""Job statuses that do not change any more."""


@dataclass(frozen=True)
class Health:
    """GET /healthz and /readyz: ``status`` is ok or "not ready"; ``model_id`` the model loaded."""

    status: str
    model_id: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Health:
        return cls(body["status"], body.get("model_id"))


@dataclass(frozen=True)
class ModelInfo:
    """One checkpoint of the store: ``image_shape`` is (C, H, W) of the images it reads and makes."""

    id: str
    family: str | None
    dataset: str | None
    labels: list[str]
    image_shape: tuple[int, int, int] | None
    preprocess: str | None
    created_at: str | None
    metrics: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelInfo:
        shape = body.get("image_shape")
        return cls(
            id=body["id"],
            family=body.get("family"),
            dataset=body.get("dataset"),
            labels=list(body.get("labels") or []),
            image_shape=(int(shape[0]), int(shape[1]), int(shape[2])) if shape else None,
            preprocess=body.get("preprocess"),
            created_at=body.get("created_at"),
            metrics=dict(body.get("metrics") or {}),
        )


@dataclass(frozen=True)
class ReplicaInfo:
    """Which API process answered, what it has ``loaded``, its store, and whether it follows it."""

    id: str
    loaded: str | None
    store: str
    store_id: str | None
    following: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ReplicaInfo:
        return cls(body["id"], body.get("loaded"), body["store"], body.get("store_id"), bool(body["following"]))


@dataclass(frozen=True)
class ModelList:
    """GET /v1/models: every model of the store (oldest first), the ``active`` one, and the replica."""

    active: str | None
    models: list[ModelInfo]
    replica: ReplicaInfo

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelList:
        models = [ModelInfo.from_json(m) for m in body["models"]]
        return cls(body.get("active"), models, ReplicaInfo.from_json(body["replica"]))

    def find(self, model_id: str | None = None) -> ModelInfo | None:
        """The model ``model_id`` (default: the active one), if the store lists it."""
        wanted = model_id or self.active
        return next((m for m in self.models if m.id == wanted), None)


@dataclass(frozen=True)
class Activation:
    """POST /v1/models/{id}/activate: the model now ``active``, and the one served before."""

    active: str
    previous: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Activation:
        return cls(body["active"], body.get("previous"))


@dataclass(frozen=True)
class Encoded:
    """POST /v1/encode: ``latents`` (N, d) float32 unit vectors, in input order."""

    model_id: str
    latents: npt.NDArray[np.float32]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Encoded:
        return cls(body["model_id"], np.asarray(body["latents"], dtype=np.float32))


@dataclass(frozen=True)
class Decoded:
    """POST /v1/decode: one image per latent, in order."""

    model_id: str
    images: list[Image.Image]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Decoded:
        return cls(body["model_id"], [pil_of_base64(png) for png in body["images"]])


@dataclass(frozen=True)
class Interpolation:
    """POST /v1/interpolate: ``frames`` from start to end, ``omegas`` their ω (0 to 1)."""

    model_id: str
    method: str
    omegas: list[float]
    frames: list[Image.Image]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Interpolation:
        frames = [pil_of_base64(png) for png in body["frames"]]
        return cls(body["model_id"], body["method"], [float(w) for w in body["omegas"]], frames)


@dataclass(frozen=True)
class HallucinatedImage:
    """One image made: its ``label``, the uploads it came from (``sources``, ω) and what the model
    ``read`` in it (None for models that cannot read labels)."""

    label: str
    image: Image.Image
    sources: tuple[int, int]
    omega: float
    read: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> HallucinatedImage:
        i, j = body["sources"]
        return cls(body["label"], pil_of_base64(body["png"]), (int(i), int(j)), float(body["omega"]), body.get("read"))


@dataclass(frozen=True)
class Disagreement:
    """An upload (``file``, its index) the model reads as ``read`` (probability ``confidence``), not as ``given``."""

    file: int
    given: str
    read: str
    confidence: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Disagreement:
        return cls(int(body["file"]), body["given"], body["read"], float(body["confidence"]))


@dataclass(frozen=True)
class SelfCheck:
    """How the model read its own images back: ``replaced`` and ``dropped`` (filter=model), ``flagged`` (none)."""

    checked: bool
    filter: str
    replaced: int
    dropped: int
    flagged: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SelfCheck:
        return cls(bool(body["checked"]), body["filter"], int(body["replaced"]), int(body["dropped"]), int(body["flagged"]))


@dataclass(frozen=True)
class Hallucination:
    """POST /v1/hallucinate: the labelled ``images`` made, the uploads the model reads otherwise, the self-check."""

    model_id: str
    strategy: str
    images: list[HallucinatedImage]
    disagreements: list[Disagreement]
    self_check: SelfCheck
    labels_note: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Hallucination:
        return cls(
            model_id=body["model_id"],
            strategy=body["strategy"],
            images=[HallucinatedImage.from_json(item) for item in body["images"]],
            disagreements=[Disagreement.from_json(d) for d in body["disagreements"]],
            self_check=SelfCheck.from_json(body["self_check"]),
            labels_note=body.get("labels_note", ""),
        )

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.images]


@dataclass(frozen=True)
class JobState:
    """GET /v1/jobs/{id}: ``status`` (queued, started, finished, failed, stopped, canceled), the last
    ``progress`` (epoch, epochs, step, steps, loss, ...), the model made, the error."""

    id: str
    status: str
    progress: dict[str, Any] | None
    model_id: str | None
    error: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobState:
        return cls(body["id"], body["status"], body.get("progress"), body.get("model_id"), body.get("error"))


@dataclass(frozen=True)
class TrainAccepted:
    """POST /v1/train: the job enqueued."""

    job_id: str
    status_url: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TrainAccepted:
        return cls(body["job_id"], body["status_url"])


@dataclass(frozen=True)
class Cancellation:
    """DELETE /v1/jobs/{id}: canceled (it never ran) or stopped (it is being stopped)."""

    id: str
    status: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Cancellation:
        return cls(body["id"], body["status"])


@dataclass(frozen=True)
class SizeRange:
    """The smallest and largest (height, width) among a data set's images, pixels."""

    min: tuple[int, int]
    max: tuple[int, int]


@dataclass(frozen=True)
class Dataset:
    """An uploaded data set: train on it with ``train(dataset=f"upload:{id}")``. ``image_shape`` is
    (C, H, W); ``counts`` the images of each label; ``bytes`` what it takes on the server."""

    id: str
    name: str
    labels: list[str]
    counts: dict[str, int]
    image_shape: tuple[int, int, int]
    size_range: SizeRange
    images: int
    created_at: str
    bytes: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Dataset:
        c, h, w = body["image_shape"]
        sizes = body["size_range"]
        return cls(
            id=body["id"],
            name=body["name"],
            labels=list(body["labels"]),
            counts={str(k): int(v) for k, v in body["counts"].items()},
            image_shape=(int(c), int(h), int(w)),
            size_range=SizeRange((sizes["min"][0], sizes["min"][1]), (sizes["max"][0], sizes["max"][1])),
            images=int(body["images"]),
            created_at=body["created_at"],
            bytes=int(body["bytes"]),
        )


@dataclass(frozen=True)
class Sample:
    """One of the active model's test images: its data set ``index`` and label."""

    index: int
    label: str
    image: Image.Image


@dataclass(frozen=True)
class Samples:
    """GET /v1/samples: up to ``per_label`` test images of each label, in label order."""

    model_id: str
    labels: list[str]
    samples: list[Sample]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Samples:
        samples = [Sample(int(s["index"]), s["label"], pil_of_base64(s["png"])) for s in body["samples"]]
        return cls(body["model_id"], list(body["labels"]), samples)


@dataclass(frozen=True)
class MapPoint:
    index: int
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class LabelCentre:
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class LatentMap:
    """GET /v1/latent-map: the test latents placed in 2-D (``points``), how (``method``, ``projection``,
    as the server gives it), and each label's sector centre on the order circle (None for pca)."""

    model_id: str
    method: str
    spherical: bool
    labels: list[str]
    projection: dict[str, Any]
    centres: list[LabelCentre] | None
    points: list[MapPoint]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> LatentMap:
        centres = body.get("centres")
        return cls(
            model_id=body["model_id"],
            method=body["method"],
            spherical=bool(body["spherical"]),
            labels=list(body["labels"]),
            projection=dict(body["projection"]),
            centres=None if centres is None else [LabelCentre(c["label"], float(c["x"]), float(c["y"])) for c in centres],
            points=[MapPoint(int(p["index"]), p["label"], float(p["x"]), float(p["y"])) for p in body["points"]],
        )


@dataclass(frozen=True)
class AuthInfo:
    """GET /v1/auth: whether training, activation, cancel and data set changes need a token here."""

    token_required: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> AuthInfo:
        return cls(bool(body["token_required"]))
