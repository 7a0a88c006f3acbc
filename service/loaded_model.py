"""One loaded model and the synchronous work of every inference operation on it.

The records an operation takes and gives (``Uploads``, ``Encoded``, ``Morph``, ...) and
``LoadedModel``, whose methods run in an inference thread (``service.engine`` hops there):
uploads are decoded to arrays (``service.imaging``), every forward pass goes through the
model's ``ModelRunner`` (``service.model_runner``: the one place that runs torch), and files
are built (``service.imaging``: PNG, GIF, zip). Input a caller can fix raises
``InvalidInput``/``PayloadTooLarge`` here and ``models.errors.InputError`` in ``models``.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models.errors import InputError
from models.geometry import Method
from models.hallucination import Filter, HallucinationResult, Strategy, default_strategy
from models.preprocess import requested
from service import answer_files, imaging, prometheus
from service.batching import Batcher
from service.errors import InvalidInput, ModelMismatch, PayloadTooLarge, ServiceError
from service.forms import parse_labels
from service.json_bodies import parse_json_body
from service.model_runner import ModelRunner
from service.schemas import DecodeRequest

if TYPE_CHECKING:
    from models.networks import SemanticAutoencoder

MorphFormat = Literal["json", "png", "gif"]
BatchFormat = Literal["json", "zip"]


@dataclass(frozen=True)
class Uploads:
    """Image bytes as uploaded, with the name errors give each (``files[3]``, ``start``)."""

    blobs: Sequence[bytes]
    fields: Sequence[str]


@dataclass(frozen=True)
class Undecoded:
    """A small request's uploads, decoded in its batch's own thread (see SMALL_UPLOAD_BYTES)."""

    uploads: Uploads
    preprocess: str
    policy: imaging.ImagePolicy

    def __len__(self) -> int:
        return len(self.uploads.blobs)

    def decode(self, lm: LoadedModel) -> np.ndarray:
        return lm.decode_images(self.uploads, self.preprocess, self.policy)


def split_rows(rows: np.ndarray, parts: Sequence[Sized]) -> list[np.ndarray]:
    """``rows`` (sum of len(part), ...) cut back into one block per part, in order."""
    return np.split(rows, np.cumsum([len(p) for p in parts[:-1]]))


@dataclass(frozen=True)
class Encoded:
    model_id: str
    latents: np.ndarray
    """(N, d) unit latents, in upload order."""


@dataclass(frozen=True)
class Decoded:
    model_id: str
    pngs: list[bytes]


@dataclass(frozen=True)
class Morph:
    model_id: str
    method: Method
    omegas: list[float]
    pngs: list[bytes]
    """One PNG per frame (format json), else empty."""
    file: bytes | None
    """The PNG strip or the GIF (formats png, gif)."""


@dataclass(frozen=True)
class Hallucination:
    model_id: str
    label_names: list[str]
    strategy: Strategy
    made: HallucinationResult
    """The samples, the examples the model reads otherwise, and what its self-check did."""
    pngs: list[bytes]
    """One PNG per sample (format json), else empty."""
    file: bytes | None
    """The zip of PNGs plus labels.csv (format zip)."""


@dataclass(frozen=True)
class HallucinationPlan:
    """What a hallucinate request asks for, besides its uploads and labels."""

    per_class: int | None
    n: int | None
    strategy: Strategy | None
    """None: the model's default (models.hallucination.default_strategy)."""
    seed: int
    preprocess: str
    fmt: BatchFormat
    filter: Filter = "model"
    """``model``: images the model reads as another label are redrawn or left out; ``none``: kept, flagged."""

    def most_images(self, num_labels: int) -> int:
        """Images it makes at most with a model of ``num_labels`` labels (models.hallucination.quotas
        checks that exactly one of ``n`` and ``per_class`` is given)."""
        return self.n if self.n is not None else (self.per_class or 0) * num_labels


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint on its device, and the synchronous work of every operation on it."""

    id: str
    runner: ModelRunner
    """Every forward pass of this model goes through it."""
    batchers: dict[str, Batcher] = field(default_factory=dict, compare=False, repr=False)
    """The model's batch queues by operation (set by ``Engine.activate``)."""

    @property
    def model(self) -> SemanticAutoencoder:
        return self.runner.model

    @property
    def meta(self) -> dict[str, Any]:
        return self.model.meta

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("labels", {}).get("names", []))

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    def decoded_bytes(self, uploads: Uploads, policy: imaging.ImagePolicy) -> int:
        """What the uploads take decoded, from their headers alone (pixels and bytes of each, and
        their sum, checked): a request over budget is refused before any image is decoded."""
        pairs = zip(uploads.blobs, uploads.fields, strict=True)
        total = sum(imaging.decoded_bytes(blob, policy.image, name) for blob, name in pairs)
        if total > policy.max_request_decoded_bytes:
            raise PayloadTooLarge(
                f"the images would take {total} bytes decoded together; the limit is "
                f"{policy.max_request_decoded_bytes} (ATNL_MAX_REQUEST_DECODED_BYTES)",
                field=uploads.fields[0].split("[")[0],
            )
        return total

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of this model's images."""
        cfg = self.model.cfg
        return cfg.channels, cfg.image_size, cfg.image_size

    def preprocessing(self, asked: str) -> str:
        """The preprocessing a request's ``preprocess`` names: ``model`` is the model's own, ``mnist`` is ``digits``."""
        return requested(asked, self.model.cfg.preprocess)

    def decode_images(self, uploads: Uploads, preprocess: str, policy: imaging.ImagePolicy) -> np.ndarray:
        """Uploads whose headers passed ``decoded_bytes`` -> (N, C, H, W) float32 in [0, 1] in this model's shape."""
        channels, side, _ = self.image_shape
        how = self.preprocessing(preprocess)
        out = np.empty((len(uploads.blobs), channels, side, side), np.float32)  # (N, C, H, W)
        for k, (blob, name) in enumerate(zip(uploads.blobs, uploads.fields, strict=True)):
            out[k] = imaging.load_image(blob, side, how, policy.image, name, channels)
        return out

    def images(self, uploads: Uploads, preprocess: str, policy: imaging.ImagePolicy) -> np.ndarray:
        """Uploads -> (N, C, H, W) float32 in [0, 1] in this model's shape, every header checked first."""
        self.decoded_bytes(uploads, policy)
        return self.decode_images(uploads, preprocess, policy)

    def latents(self, body: bytes, max_latents: int, max_abs: float) -> np.ndarray:
        """A JSON body ``{"latents": [[...], ...]}`` -> (N, d) float32, checked.

        Coordinates must be finite and within ±``max_abs`` (ATNL_MAX_LATENT_ABS): larger
        finite values overflow float32 in the decoder and come out as NaN."""
        request = parse_json_body(DecodeRequest, body)
        if request.model_id is not None and request.model_id != self.id:
            raise ModelMismatch.of(self.id, request.model_id)
        if len(request.latents) > max_latents:
            raise PayloadTooLarge(
                f"{len(request.latents)} latents sent; the limit is {max_latents} (ATNL_MAX_LATENTS)", field="latents"
            )
        if len({len(z) for z in request.latents}) != 1:
            raise InvalidInput("every latent vector must have the same length", field="latents")
        if len(request.latents[0]) != self.latent_dim:
            raise InvalidInput(
                f"latents must be a list of vectors of length {self.latent_dim} (model {self.id})", field="latents"
            )
        latents = np.asarray(request.latents, np.float64)
        if not np.isfinite(latents).all():
            raise InvalidInput("latents must be finite numbers", field="latents")
        if np.abs(latents).max() > max_abs:
            raise InvalidInput(f"latents must lie within ±{max_abs:g} (ATNL_MAX_LATENT_ABS)", field="latents")
        return latents.astype(np.float32)

    def encode_batch(self, parts: list[np.ndarray | Undecoded]) -> list[np.ndarray | ServiceError | InputError]:
        """One forward for several requests: [(N_i, C, H, W) images, or uploads to decode here first]
        -> [(N_i, d) unit latents], or the error of a request whose uploads do not decode."""
        images: list[np.ndarray] = []
        failed: dict[int, ServiceError | InputError] = {}
        for k, part in enumerate(parts):
            try:
                images.append(part if isinstance(part, np.ndarray) else part.decode(self))
            except (ServiceError, InputError) as e:  # that request's answer; the others go on
                failed[k] = e
        if not images:
            return list(failed.values())
        latents = iter(split_rows(self.runner.encode(images[0] if len(images) == 1 else np.concatenate(images)), images))
        return [failed[k] if k in failed else next(latents) for k in range(len(parts))]

    def decode_batch(self, parts: list[np.ndarray]) -> list[list[bytes] | InvalidInput]:
        """One forward for several requests: [(N_i, d) latents] -> [one PNG per latent], or the
        error of a request whose latents decode to non-finite pixels."""
        images = self.runner.decode(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return [self.pngs(part) for part in split_rows(images, parts)]

    @staticmethod
    def pngs(images: np.ndarray) -> list[bytes] | InvalidInput:
        if not np.isfinite(images).all():  # a model that overflows anyway: refuse rather than send NaN as black
            return InvalidInput("these latents decode to non-finite pixels; send smaller values", field="latents")
        return [answer_files.png_bytes(im) for im in images]

    def encode(self, uploads: Uploads, preprocess: str, policy: imaging.ImagePolicy) -> Encoded:
        """The whole of an encode request in one call (batching off, and the in-process benchmark)."""
        images = self.images(uploads, preprocess, policy)
        prometheus.BATCH_SIZE.labels("encode").observe(len(images))
        return Encoded(self.id, self.runner.encode(images))

    def decode(self, body: bytes, max_latents: int, max_abs: float) -> Decoded:
        """The whole of a decode request in one call: JSON latents -> one PNG per latent, decoded as given."""
        latents = self.latents(body, max_latents, max_abs)
        prometheus.BATCH_SIZE.labels("decode").observe(len(latents))
        pngs = self.pngs(self.runner.decode(latents))
        if isinstance(pngs, InvalidInput):
            raise pngs
        return Decoded(self.id, pngs)

    def interpolate(
        self, uploads: Uploads, steps: int, method: Method, preprocess: str, fmt: MorphFormat, policy: imaging.ImagePolicy
    ) -> Morph:
        """Two uploads (start, end) -> ``steps`` frames decoded along the path between their codes
        (``models.geometry.latent_path``), endpoints included."""
        images = self.images(uploads, preprocess, policy)  # (2, C, H, W)
        prometheus.BATCH_SIZE.labels("interpolate").observe(steps)
        omegas = np.linspace(0.0, 1.0, steps, dtype=np.float32)
        frames = self.runner.path(images, omegas, method)  # (steps, C, H, W)
        if fmt == "json":
            return Morph(self.id, method, omegas.tolist(), [answer_files.png_bytes(f) for f in frames], None)
        file = answer_files.png_strip(list(frames)) if fmt == "png" else answer_files.gif_bytes(list(frames), policy.gif_frame_ms)
        return Morph(self.id, method, omegas.tolist(), [], file)

    def hallucinate(
        self, uploads: Uploads, labels: Sequence[str], plan: HallucinationPlan, policy: imaging.ImagePolicy
    ) -> Hallucination:
        """A labelled few-shot set -> new labelled images (see models.hallucination)."""
        label_idx = parse_labels(labels, self.label_names, len(uploads.blobs))
        images = self.images(uploads, plan.preprocess, policy)
        strategy = plan.strategy or default_strategy(self.model)
        prometheus.BATCH_SIZE.labels("hallucinate").observe(plan.most_images(len(self.label_names)))
        made, pixels = self.runner.hallucinate(
            images, label_idx, len(self.label_names), plan.per_class, plan.n, strategy, plan.seed, plan.filter
        )
        pngs = [answer_files.png_bytes(image) for image in pixels]
        if plan.fmt == "zip":
            names = self.label_names
            rows = [
                answer_files.ZipRow(names[s.label], s.sources, s.omega, None if s.read is None else names[s.read])
                for s in made.samples
            ]
            given = [(d.index, names[d.given], names[d.read], d.confidence) for d in made.disagreements]
            return Hallucination(self.id, names, strategy, made, [], answer_files.zip_bytes(pngs, rows, given))
        return Hallucination(self.id, self.label_names, strategy, made, pngs, None)
