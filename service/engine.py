"""Inference: the loaded model, hot swap, and one method per operation.

A route parses its typed inputs, calls one ``Engine`` method, and formats the
record it gets back. Each method takes the current model once and does all its
work (decoding uploads, the model, encoding pictures) in one inference thread
(at most ``ATNL_INFERENCE_THREADS`` at a time), so the event loop keeps answering.
The work itself lives on ``LoadedModel``: plain synchronous methods, which the
service benchmark also calls in process.

Input a caller can fix raises ``InvalidInput``/``PayloadTooLarge`` here and
``models.errors.InputError`` in ``models``; ``service.errors`` maps both to 422/413
problem+json in one place.

Hot swap: the new checkpoint is loaded completely first, then ``current`` is
replaced by one assignment. A request takes ``current`` once at its start and
uses that model to its end, so it never sees half of a swap and never fails
because of one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import numpy as np
import torch

from models import CheckpointError, load_checkpoint
from models.device import resolve_device
from models.geometry import Method, latent_path
from models.hallucination import HallucinatedSample, Strategy, default_strategy, hallucinate, quotas
from models.networks import SemanticAutoencoder
from service import imaging, metrics
from service.cuda_memory import limit_cuda_memory
from service.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge
from service.forms import parse_labels
from service.json_bodies import parse_json_body
from service.schemas import DecodeRequest
from service.settings import Settings
from service.store import ModelStore

log = logging.getLogger("atnl.engine")
T = TypeVar("T")
MorphFormat = Literal["json", "png", "gif"]
BatchFormat = Literal["json", "zip"]


@dataclass(frozen=True)
class Uploads:
    """Image bytes as uploaded, with the name errors give each (``files[3]``, ``start``)."""

    blobs: Sequence[bytes]
    fields: Sequence[str]


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
    samples: list[HallucinatedSample]
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
    preprocess: bool
    fmt: BatchFormat
    total: int = 0
    """Images it will make at most (set by ``Engine.hallucinate`` once the model is known)."""


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint on its device, and the synchronous work of every operation on it."""

    id: str
    model: SemanticAutoencoder
    device: torch.device

    @property
    def meta(self) -> dict[str, Any]:
        return self.model.meta  # type: ignore[no-any-return]

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("labels", {}).get("names", []))

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    def tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W) float numpy -> (N, C, H, W) on the model's device (grey repeated over C)."""
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]  # (N, 1, H, W)
        channels = self.model.cfg.channels
        return x.expand(-1, channels, -1, -1).contiguous().to(self.device) if channels != 1 else x.to(self.device)

    def images(self, uploads: Uploads, preprocess: bool, limits: imaging.RequestLimits) -> np.ndarray:
        """Uploads -> (N, H, W) in [0, 1] at this model's size. Every header is checked first
        (pixels, decoded bytes, and their sum), so a request over budget is refused before any
        image is decoded."""
        pairs = list(zip(uploads.blobs, uploads.fields, strict=True))
        total = sum(imaging.decoded_bytes(blob, limits.image, field) for blob, field in pairs)
        if total > limits.max_request_decoded_bytes:
            raise PayloadTooLarge(
                f"the images would take {total} bytes decoded together; the limit is "
                f"{limits.max_request_decoded_bytes} (ATNL_MAX_REQUEST_DECODED_BYTES)",
                field=uploads.fields[0].split("[")[0],
            )
        return np.stack([imaging.load_image(blob, self.image_size, preprocess, limits.image, field) for blob, field in pairs])

    def encode(self, uploads: Uploads, preprocess: bool, limits: imaging.RequestLimits) -> Encoded:
        x = self.tensor(self.images(uploads, preprocess, limits))
        metrics.BATCH_SIZE.labels("encode").observe(len(x))
        with torch.inference_mode():
            return Encoded(self.id, self.model.encode(x).cpu().numpy())

    def decode(self, body: bytes, max_latents: int, max_abs: float) -> Decoded:
        """A JSON body ``{"latents": [[...], ...]}`` -> one PNG per latent, decoded as given.

        Coordinates must be finite and within ±``max_abs`` (ATNL_MAX_LATENT_ABS): larger
        finite values overflow float32 in the decoder and come out as NaN."""
        request = parse_json_body(DecodeRequest, body)
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
        metrics.BATCH_SIZE.labels("decode").observe(len(latents))
        with torch.inference_mode():
            images = self.model.decode(torch.from_numpy(latents.astype(np.float32)).to(self.device)).cpu().numpy()
        if not np.isfinite(images).all():  # a model that overflows anyway: refuse rather than send NaN as black
            raise InvalidInput("these latents decode to non-finite pixels; send smaller values", field="latents")
        return Decoded(self.id, [imaging.png_bytes(im) for im in images])

    def interpolate(
        self, uploads: Uploads, steps: int, method: Method, preprocess: bool, fmt: MorphFormat, limits: imaging.RequestLimits
    ) -> Morph:
        """Two uploads (start, end) -> ``steps`` frames decoded along the path between their codes
        (``models.geometry.latent_path``), endpoints included."""
        x = self.tensor(self.images(uploads, preprocess, limits))
        metrics.BATCH_SIZE.labels("interpolate").observe(steps)
        with torch.inference_mode():
            codes = self.model.code(x)  # (2, d)
            omegas = torch.linspace(0.0, 1.0, steps, device=codes.device, dtype=codes.dtype)
            frames = self.model.decode(latent_path(codes[0], codes[1], omegas, method, self.model.cfg.spherical)).cpu().numpy()
        if fmt == "json":
            return Morph(self.id, method, omegas.cpu().tolist(), [imaging.png_bytes(f) for f in frames], None)
        file = imaging.png_strip(list(frames)) if fmt == "png" else imaging.gif_bytes(list(frames), limits.gif_frame_ms)
        return Morph(self.id, method, omegas.cpu().tolist(), [], file)

    def hallucinate(
        self, uploads: Uploads, labels: Sequence[str], plan: HallucinationPlan, limits: imaging.RequestLimits
    ) -> Hallucination:
        """A labelled few-shot set -> new labelled images (see models.hallucination)."""
        label_idx = parse_labels(labels, self.label_names, len(uploads.blobs))
        x = self.tensor(self.images(uploads, plan.preprocess, limits))
        strategy = plan.strategy or default_strategy(self.model)
        metrics.BATCH_SIZE.labels("hallucinate").observe(plan.total)
        with torch.inference_mode():
            samples = hallucinate(
                self.model, x, torch.tensor(label_idx), len(self.label_names), plan.per_class, plan.n, strategy, plan.seed
            )
        pngs = [imaging.png_bytes(s.image.cpu().numpy()) for s in samples]
        if plan.fmt == "zip":
            rows = [(self.label_names[s.label], s.sources, s.omega) for s in samples]
            return Hallucination(self.id, self.label_names, samples, [], imaging.zip_bytes(pngs, rows))
        return Hallucination(self.id, self.label_names, samples, pngs, None)


class Engine:
    """The process's current model, its hot swap, and the thread pool inference runs in."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self._current: LoadedModel | None = None
        self._swap_lock = asyncio.Lock()
        self._limiter = anyio.CapacityLimiter(settings.inference_threads)
        self._device: torch.device | None = None

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> LoadedModel:
        """The model to use for one whole request; ModelNotReady before the first load."""
        lm = self._current
        if lm is None:
            raise ModelNotReady("no model is loaded yet (first start may still be training the default model)")
        return lm

    async def run(self, fn: Callable[..., T], *args: Any, op: str | None = None) -> T:
        """Run ``fn(*args)`` in an inference thread; time it under ``op`` when given."""
        start = time.perf_counter()
        result = await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)
        if op is not None:
            metrics.INFERENCE_SECONDS.labels(op).observe(time.perf_counter() - start)
        return result

    def _load(self, model_id: str) -> LoadedModel:
        if self._device is None:
            self._device = resolve_device(self.settings.device)  # CUDA first touched here, in the serving process
            if self._device.type == "cuda":
                limit_cuda_memory(self.settings.cuda_memory_fraction)
        path = self.store.checkpoint(model_id)
        try:
            model = load_checkpoint(path, device=self._device)
        except (CheckpointError, OSError) as e:
            raise ModelNotFound(f"model {model_id!r} cannot be loaded: {e}") from e
        return LoadedModel(model_id, model, self._device)

    async def activate(self, model_id: str, write_pointer: bool = True) -> LoadedModel:
        """Load ``model_id`` fully, then make it current (and the store's ACTIVE)."""
        async with self._swap_lock:
            if self._current is not None and self._current.id == model_id:
                if write_pointer and self.store.active_id() != model_id:
                    self.store.set_active(model_id)
                return self._current
            loaded = await anyio.to_thread.run_sync(self._load, model_id)
            if write_pointer:
                self.store.set_active(model_id)
            previous, self._current = self._current, loaded
            metrics.set_active_model(model_id, previous.id if previous else None)
            log.info("serving model %s%s", model_id, f" (was {previous.id})" if previous else "")
            return loaded

    def _wanted(self) -> str | None:
        """The model to serve: the ACTIVE pointer (one small read), else the newest checkpoint
        (reads every model.json; only while the pointer names nothing)."""
        return self.store.active_id() or self.store.default_id()

    async def follow_store(self) -> None:
        """Pick up ACTIVE changes made by workers (``activate: true``), the bootstrap or other replicas."""
        while True:
            await asyncio.sleep(self.settings.store_poll_seconds)
            try:
                wanted = await anyio.to_thread.run_sync(self._wanted)  # reads the disk: off the event loop
                if wanted is not None and (self._current is None or self._current.id != wanted):
                    await self.activate(wanted, write_pointer=await anyio.to_thread.run_sync(self.store.active_id) is None)
            except Exception:  # keep following; a bad checkpoint must not stop the loop
                log.exception("could not follow the model store")

    @property
    def limits(self) -> imaging.RequestLimits:
        s = self.settings
        return imaging.RequestLimits(
            imaging.DecodeLimits(s.max_pixels, s.max_decoded_bytes), s.max_request_decoded_bytes, s.gif_frame_ms
        )

    async def encode(self, uploads: Uploads, preprocess: bool) -> Encoded:
        lm = self.current
        return await self.run(lm.encode, uploads, preprocess, self.limits, op="encode")

    async def decode(self, body: bytes) -> Decoded:
        """The raw JSON body is parsed in the same thread hop: a 16 MB body must not block the event loop."""
        lm = self.current
        return await self.run(lm.decode, body, self.settings.max_latents, self.settings.max_latent_abs, op="decode")

    async def interpolate(self, uploads: Uploads, steps: int | None, method: Method, preprocess: bool, fmt: MorphFormat) -> Morph:
        steps = self.settings.default_steps if steps is None else steps
        if steps > self.settings.max_steps:
            raise InvalidInput(
                f"steps must be between 2 and {self.settings.max_steps} (ATNL_MAX_STEPS), got {steps}", field="steps"
            )
        lm = self.current
        return await self.run(lm.interpolate, uploads, steps, method, preprocess, fmt, self.limits, op="interpolate")

    async def hallucinate(self, uploads: Uploads, labels: Sequence[str], plan: HallucinationPlan) -> Hallucination:
        lm = self.current  # once: labels are checked against, and images encoded by, this model
        total = sum(quotas(len(lm.label_names), plan.per_class, plan.n))
        if total > self.settings.max_hallucinate_n:
            raise InvalidInput(
                f"asks for {total} images; allowed 1..{self.settings.max_hallucinate_n} (ATNL_MAX_HALLUCINATE_N)",
                field="n" if plan.n is not None else "per_class",
            )
        plan = dataclasses.replace(plan, total=total)
        return await self.run(lm.hallucinate, uploads, labels, plan, self.limits, op="hallucinate")
