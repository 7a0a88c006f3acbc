"""Inference: the loaded model, hot swap, and one method per operation.

A route parses its typed inputs, calls one ``Engine`` method, and formats the
record it gets back. Each method takes the current model once and uses it to the
end. Blocking work runs in inference threads (at most ``ATNL_INFERENCE_THREADS`` at
a time), so the event loop keeps answering:

- encode and decode (ATNL_BATCH_ENABLED, on by default): the request's inputs are
  decoded in one thread hop (uploads -> images, or JSON -> latents), then join the
  model's batch queue for the operation (service.batching), where concurrent requests
  run as one forward; decode's PNGs are made in the batch's thread;
- interpolate and hallucinate, and encode/decode with batching off: the whole
  operation in one thread hop.

The work itself lives on ``LoadedModel``: plain synchronous methods, which the
service benchmark also calls in process; forwards go through its ``ModelRunner``
(service.model_runner: inference mode, pinned copies on CUDA, autocast, compile).
A client that disconnects while its work is queued cancels it (service.disconnect).

Input a caller can fix raises ``InvalidInput``/``PayloadTooLarge`` here and
``models.errors.InputError`` in ``models``; ``service.errors`` maps both to 422/413
problem+json in one place.

Hot swap: the new checkpoint is loaded completely first, then ``current`` is
replaced by one assignment. A request takes ``current`` once at its start and
uses that model to its end, so it never sees half of a swap and never fails
because of one. Batch queues belong to a loaded model: requests queued on the old
model finish on it while new ones queue on the new one; no batch mixes models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
import numpy as np
import torch

from models import CheckpointError, load_checkpoint
from models.device import resolve_device
from models.errors import InputError
from models.geometry import Method, latent_path
from models.hallucination import Filter, HallucinationResult, Strategy, default_strategy, hallucinate, quotas
from models.networks import SemanticAutoencoder
from service import imaging, metrics
from service.batching import Batcher, BatchFn, BatchPolicy
from service.cuda_memory import limit_cuda_memory
from service.disconnect import cancel_on_disconnect
from service.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge, ServiceError
from service.forms import parse_labels
from service.json_bodies import parse_json_body
from service.model_runner import ModelRunner, RunnerOptions, set_torch_threads
from service.schemas import DecodeRequest
from service.settings import Settings
from service.store import ModelStore

log = logging.getLogger("atnl.engine")
SMALL_UPLOAD_BYTES = 16 * 1024
"""An encode request whose uploads take at most this many bytes together (a few dozen MNIST
PNGs), and at most SMALL_DECODED_BYTES decoded, is decoded in its batch's own thread: a hop to
a thread of its own costs more than decoding a few small PNGs (~0.1 ms each). Larger ones are
decoded in inference threads first, in parallel, so no big upload holds up a batch."""
SMALL_DECODED_BYTES = 64 * 1024
T = TypeVar("T")
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
    preprocess: bool
    limits: imaging.RequestLimits

    def __len__(self) -> int:
        return len(self.uploads.blobs)

    def decode(self, lm: LoadedModel) -> np.ndarray:
        return lm.decode_images(self.uploads, self.preprocess, self.limits)


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
    preprocess: bool
    fmt: BatchFormat
    filter: Filter = "model"
    """``model``: images the model reads as another label are redrawn or left out; ``none``: kept, flagged."""
    total: int = 0
    """Images it will make at most (set by ``Engine.hallucinate`` once the model is known)."""


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint on its device, and the synchronous work of every operation on it."""

    id: str
    model: SemanticAutoencoder
    device: torch.device
    runner: ModelRunner
    batchers: dict[str, Batcher] = field(default_factory=dict, compare=False, repr=False)
    """The model's batch queues by operation (set by ``Engine.activate``)."""

    @classmethod
    def of(cls, model_id: str, model: SemanticAutoencoder, device: torch.device, options: RunnerOptions) -> LoadedModel:
        return cls(model_id, model, device, ModelRunner(model, device, options))

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

    def decoded_bytes(self, uploads: Uploads, limits: imaging.RequestLimits) -> int:
        """What the uploads take decoded, from their headers alone (pixels and bytes of each, and
        their sum, checked): a request over budget is refused before any image is decoded."""
        pairs = zip(uploads.blobs, uploads.fields, strict=True)
        total = sum(imaging.decoded_bytes(blob, limits.image, name) for blob, name in pairs)
        if total > limits.max_request_decoded_bytes:
            raise PayloadTooLarge(
                f"the images would take {total} bytes decoded together; the limit is "
                f"{limits.max_request_decoded_bytes} (ATNL_MAX_REQUEST_DECODED_BYTES)",
                field=uploads.fields[0].split("[")[0],
            )
        return total

    def decode_images(self, uploads: Uploads, preprocess: bool, limits: imaging.RequestLimits) -> np.ndarray:
        """Uploads whose headers passed ``decoded_bytes`` -> (N, H, W) float32 in [0, 1] at this model's size."""
        out = np.empty((len(uploads.blobs), self.image_size, self.image_size), np.float32)  # (N, H, W)
        for k, (blob, name) in enumerate(zip(uploads.blobs, uploads.fields, strict=True)):
            out[k] = imaging.load_image(blob, self.image_size, preprocess, limits.image, name)
        return out

    def images(self, uploads: Uploads, preprocess: bool, limits: imaging.RequestLimits) -> np.ndarray:
        """Uploads -> (N, H, W) float32 in [0, 1] at this model's size, every header checked first."""
        self.decoded_bytes(uploads, limits)
        return self.decode_images(uploads, preprocess, limits)

    def latents(self, body: bytes, max_latents: int, max_abs: float) -> np.ndarray:
        """A JSON body ``{"latents": [[...], ...]}`` -> (N, d) float32, checked.

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
        return latents.astype(np.float32)

    def encode_batch(self, parts: list[np.ndarray | Undecoded]) -> list[np.ndarray | ServiceError | InputError]:
        """One forward for several requests: [(N_i, H, W) images, or uploads to decode here first]
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
        return [imaging.png_bytes(im) for im in images]

    def encode(self, uploads: Uploads, preprocess: bool, limits: imaging.RequestLimits) -> Encoded:
        """The whole of an encode request in one call (batching off, and the in-process benchmark)."""
        images = self.images(uploads, preprocess, limits)
        metrics.BATCH_SIZE.labels("encode").observe(len(images))
        return Encoded(self.id, self.runner.encode(images))

    def decode(self, body: bytes, max_latents: int, max_abs: float) -> Decoded:
        """The whole of a decode request in one call: JSON latents -> one PNG per latent, decoded as given."""
        latents = self.latents(body, max_latents, max_abs)
        metrics.BATCH_SIZE.labels("decode").observe(len(latents))
        pngs = self.pngs(self.runner.decode(latents))
        if isinstance(pngs, InvalidInput):
            raise pngs
        return Decoded(self.id, pngs)

    def interpolate(
        self, uploads: Uploads, steps: int, method: Method, preprocess: bool, fmt: MorphFormat, limits: imaging.RequestLimits
    ) -> Morph:
        """Two uploads (start, end) -> ``steps`` frames decoded along the path between their codes
        (``models.geometry.latent_path``), endpoints included."""
        codes = torch.from_numpy(self.runner.code(self.images(uploads, preprocess, limits)))  # (2, d)
        metrics.BATCH_SIZE.labels("interpolate").observe(steps)
        omegas = torch.linspace(0.0, 1.0, steps, dtype=codes.dtype)
        path = latent_path(codes[0], codes[1], omegas, method, self.model.cfg.spherical)  # (steps, d)
        frames = self.runner.decode(path.numpy())  # (steps, C, H, W)
        if fmt == "json":
            return Morph(self.id, method, omegas.tolist(), [imaging.png_bytes(f) for f in frames], None)
        file = imaging.png_strip(list(frames)) if fmt == "png" else imaging.gif_bytes(list(frames), limits.gif_frame_ms)
        return Morph(self.id, method, omegas.tolist(), [], file)

    def hallucinate(
        self, uploads: Uploads, labels: Sequence[str], plan: HallucinationPlan, limits: imaging.RequestLimits
    ) -> Hallucination:
        """A labelled few-shot set -> new labelled images (see models.hallucination)."""
        label_idx = parse_labels(labels, self.label_names, len(uploads.blobs))
        x = self.runner.images_tensor(self.images(uploads, plan.preprocess, limits))
        strategy = plan.strategy or default_strategy(self.model)
        metrics.BATCH_SIZE.labels("hallucinate").observe(plan.total)
        with self.runner.inference():
            made = hallucinate(
                self.model,
                x,
                torch.tensor(label_idx),
                len(self.label_names),
                plan.per_class,
                plan.n,
                strategy,
                plan.seed,
                plan.filter,
            )
        pngs = [imaging.png_bytes(s.image.float().cpu().numpy()) for s in made.samples]
        if plan.fmt == "zip":
            names = self.label_names
            rows = [
                imaging.ZipRow(names[s.label], s.sources, s.omega, None if s.read is None else names[s.read])
                for s in made.samples
            ]
            given = [(d.index, names[d.given], names[d.read], d.confidence) for d in made.disagreements]
            return Hallucination(self.id, names, strategy, made, [], imaging.zip_bytes(pngs, rows, given))
        return Hallucination(self.id, self.label_names, strategy, made, pngs, None)


class Engine:
    """The process's current model, its hot swap, the batch queues and the inference threads."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self._current: LoadedModel | None = None
        self._swap_lock = asyncio.Lock()
        self._limiter = anyio.CapacityLimiter(settings.inference_threads)
        self._device: torch.device | None = None
        s = settings
        self.limits = imaging.RequestLimits(
            imaging.DecodeLimits(s.max_pixels, s.max_decoded_bytes), s.max_request_decoded_bytes, s.gif_frame_ms
        )
        self.batch_policy = BatchPolicy(
            s.batch_max_images, s.batch_max_delay_ms / 1000.0, s.batch_max_queued_images, s.batch_retry_after_seconds
        )
        self.runner_options = RunnerOptions(s.autocast, s.torch_compile, s.cuda_pin_memory)

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
            threads = set_torch_threads(self.settings.torch_threads, self.settings.inference_threads)
            log.info("inference: %d threads x %d torch threads", self.settings.inference_threads, threads)
        path = self.store.checkpoint(model_id)
        try:
            model = load_checkpoint(path, device=self._device)
        except (CheckpointError, OSError) as e:
            raise ModelNotFound(f"model {model_id!r} cannot be loaded: {e}") from e
        return LoadedModel.of(model_id, model, self._device, self.runner_options)  # compiles here when asked

    def _add_batchers(self, lm: LoadedModel) -> None:
        """Give a freshly loaded model its batch queues (on the event loop: they hold asyncio objects)."""
        for op, batch_fn in (("encode", lm.encode_batch), ("decode", lm.decode_batch)):

            async def in_thread(fn: BatchFn, parts: list[Any], op: str = op) -> Sequence[Any]:
                return await self.run(fn, parts, op=op)

            lm.batchers[op] = Batcher(op, batch_fn, self.batch_policy, in_thread)

    async def activate(self, model_id: str, write_pointer: bool = True) -> LoadedModel:
        """Load ``model_id`` fully, then make it current (and the store's ACTIVE)."""
        async with self._swap_lock:
            if self._current is not None and self._current.id == model_id:
                if write_pointer and self.store.active_id() != model_id:
                    self.store.set_active(model_id)
                return self._current
            loaded = await anyio.to_thread.run_sync(self._load, model_id)
            self._add_batchers(loaded)
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

    async def _batched(self, lm: LoadedModel, op: str, prepare: Callable[..., np.ndarray], *args: Any) -> Any:
        """``prepare(*args)`` in a thread (decoding the request's inputs), then the result of its
        payload from the model's ``op`` batch queue."""
        batcher = lm.batchers[op]
        with batcher.arriving():
            payload = await self.run(prepare, *args)
        metrics.BATCH_SIZE.labels(op).observe(len(payload))
        return await batcher.submit(payload)

    async def encode(self, uploads: Uploads, preprocess: bool) -> Encoded:
        lm = self.current
        async with cancel_on_disconnect():
            if not self.settings.batch_enabled:
                return await self.run(lm.encode, uploads, preprocess, self.limits, op="encode")
            if self._small(lm, uploads):  # header checks here; decoded in the batch's thread
                metrics.BATCH_SIZE.labels("encode").observe(len(uploads.blobs))
                latents = await lm.batchers["encode"].submit(Undecoded(uploads, preprocess, self.limits))
            else:
                latents = await self._batched(lm, "encode", lm.images, uploads, preprocess, self.limits)
            return Encoded(lm.id, latents)

    def _small(self, lm: LoadedModel, uploads: Uploads) -> bool:
        """Uploads small enough to check on the event loop and decode in the batch's thread (SMALL_UPLOAD_BYTES)."""
        if sum(map(len, uploads.blobs)) > SMALL_UPLOAD_BYTES:
            return False
        return lm.decoded_bytes(uploads, self.limits) <= SMALL_DECODED_BYTES

    async def decode(self, body: bytes) -> Decoded:
        """The raw JSON body is parsed in a thread: a 16 MB body must not block the event loop."""
        lm = self.current
        s = self.settings
        async with cancel_on_disconnect():
            if not s.batch_enabled:
                return await self.run(lm.decode, body, s.max_latents, s.max_latent_abs, op="decode")
            pngs = await self._batched(lm, "decode", lm.latents, body, s.max_latents, s.max_latent_abs)
            return Decoded(lm.id, pngs)

    async def interpolate(self, uploads: Uploads, steps: int | None, method: Method, preprocess: bool, fmt: MorphFormat) -> Morph:
        steps = self.settings.default_steps if steps is None else steps
        if steps > self.settings.max_steps:
            raise InvalidInput(
                f"steps must be between 2 and {self.settings.max_steps} (ATNL_MAX_STEPS), got {steps}", field="steps"
            )
        lm = self.current
        async with cancel_on_disconnect():
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
        async with cancel_on_disconnect():
            return await self.run(lm.hallucinate, uploads, labels, plan, self.limits, op="hallucinate")
