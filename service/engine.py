"""Inference coordination: the active model, hot swap, batch queues, and one method per operation.

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

The work itself lives on ``LoadedModel`` (service.loaded_model): plain synchronous
methods, which the service benchmark also calls in process; forwards go through its
``ModelRunner`` (service.model_runner: inference mode, pinned copies on CUDA, autocast,
compile), the one module here that runs torch.
A client that disconnects while its work is queued cancels it (service.disconnect).

Input a caller can fix raises ``InvalidInput``/``PayloadTooLarge`` here and
``models.errors.InputError`` in ``models``; ``service.errors`` maps both to 422/413
problem+json in one place.

Following the store (service.following): ACTIVE is the one truth, read every
ATNL_STORE_POLL_SECONDS and at once when Redis announces an activation. A request may pin the
model it expects (``model_id``): another one answers 409.

Hot swap: the new checkpoint is loaded completely first, then ``current`` is
replaced by one assignment. A request takes ``current`` once at its start and
uses that model to its end, so it never sees half of a swap and never fails
because of one. Batch queues belong to a loaded model: requests queued on the old
model finish on it while new ones queue on the new one; no batch mixes models.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import numpy as np

from models import CheckpointError
from models.geometry import Method
from service import activation, imaging, prometheus, tensors
from service.batching import Batcher, BatchFn, BatchPolicy
from service.bounds import HALLUCINATE_N, STEPS
from service.disconnect import cancel_on_disconnect
from service.errors import InvalidInput, ModelMismatch, ModelNotFound, ModelNotReady
from service.loaded_model import (
    Decoded,
    Encoded,
    Hallucination,
    HallucinationPlan,
    LoadedModel,
    Morph,
    MorphFormat,
    Undecoded,
    Uploads,
)
from service.model_runner import RunnerOptions, load_runner, open_device
from service.settings import Settings
from service.store import ModelStore

if TYPE_CHECKING:
    import torch

log = logging.getLogger("atnl.engine")
SMALL_UPLOAD_BYTES = 16 * 1024
"""An encode request whose uploads take at most this many bytes together (a few dozen MNIST
PNGs), and at most SMALL_DECODED_BYTES decoded, is decoded in its batch's own thread: a hop to
a thread of its own costs more than decoding a few small PNGs (~0.1 ms each). Larger ones are
decoded in inference threads first, in parallel, so no big upload holds up a batch."""
SMALL_DECODED_BYTES = 64 * 1024
T = TypeVar("T")


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
        self.image_policy = imaging.ImagePolicy(
            imaging.ImageCaps(s.max_pixels, s.max_decoded_bytes), s.max_request_decoded_bytes, s.gif_frame_ms
        )
        self.batch_policy = BatchPolicy(
            s.batch_max_images, s.batch_max_delay_ms / 1000.0, s.batch_max_queued_images, s.batch_retry_after_seconds
        )
        self.runner_options = RunnerOptions(s.autocast, s.torch_compile, s.cuda_pin_memory)
        self.replica_id = s.replica_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store_id: str | None = None
        """The id of the store this process started on (None until the store was first reached)."""
        self.store_replaced = False
        """Set when the store's id stops being ``store_id``: this process then stops following it."""

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

    def serving(self, model_id: str | None) -> LoadedModel:
        """``current``, for a request that may pin the model it expects: ModelMismatch (409, naming
        the model served) when ``model_id`` is given and is another one."""
        lm = self.current
        if model_id is not None and model_id != lm.id:
            raise ModelMismatch.of(lm.id, model_id)
        return lm

    async def run(self, fn: Callable[..., T], *args: Any, op: str | None = None) -> T:
        """Run ``fn(*args)`` in an inference thread; time it under ``op`` when given."""
        start = time.perf_counter()
        result = await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)
        if op is not None:
            prometheus.INFERENCE_SECONDS.labels(op).observe(time.perf_counter() - start)
        return result

    def _load(self, model_id: str) -> LoadedModel:
        s = self.settings
        if self._device is None:  # CUDA first touched here, in the serving process
            self._device = open_device(s.device, s.cuda_memory_fraction, s.torch_threads, s.inference_threads)
        try:
            runner = load_runner(self.store.checkpoint(model_id), self._device, self.runner_options)  # compiles here when asked
        except (CheckpointError, OSError) as e:
            raise ModelNotFound(f"model {model_id!r} cannot be loaded: {e}") from e
        return LoadedModel(model_id, runner)

    def _add_batchers(self, lm: LoadedModel) -> None:
        """Give a freshly loaded model its batch queues (on the event loop: they hold asyncio objects)."""
        for op, batch_fn in (("encode", lm.encode_batch), ("decode", lm.decode_batch)):

            async def in_thread(fn: BatchFn, parts: list[Any], op: str = op) -> Sequence[Any]:
                return await self.run(fn, parts, op=op)

            lm.batchers[op] = Batcher(op, batch_fn, self.batch_policy, in_thread)

    def _point(self, model_id: str) -> None:
        """Write ACTIVE and announce it to the other replicas (blocking: in a thread)."""
        s = self.settings
        activation.activate(self.store, model_id, s.redis_url if s.redis_activation_channel else None)

    async def activate(self, model_id: str, write_pointer: bool = True) -> LoadedModel:
        """Load ``model_id`` fully, then make it current (and the store's ACTIVE, announced)."""
        async with self._swap_lock:
            if self._current is not None and self._current.id == model_id:
                if write_pointer and await anyio.to_thread.run_sync(self.store.active_id) != model_id:
                    await anyio.to_thread.run_sync(self._point, model_id)
                return self._current
            loaded = await anyio.to_thread.run_sync(self._load, model_id)
            self._add_batchers(loaded)
            if write_pointer:
                await anyio.to_thread.run_sync(self._point, model_id)
            previous, self._current = self._current, loaded
            prometheus.set_active_model(model_id, previous.id if previous else None)
            log.info("serving model %s%s", model_id, f" (was {previous.id})" if previous else "")
            return loaded

    async def _batched(self, lm: LoadedModel, op: str, prepare: Callable[..., np.ndarray], *args: Any) -> Any:
        """``prepare(*args)`` in a thread (decoding the request's inputs), then the result of its
        payload from the model's ``op`` batch queue."""
        batcher = lm.batchers[op]
        with batcher.arriving():
            payload = await self.run(prepare, *args)
        prometheus.BATCH_SIZE.labels(op).observe(len(payload))
        return await batcher.submit(payload)

    async def encode(self, uploads: Uploads, preprocess: str, model_id: str | None = None) -> Encoded:
        lm = self.serving(model_id)
        async with cancel_on_disconnect():
            if not self.settings.batch_enabled:
                return await self.run(lm.encode, uploads, preprocess, self.image_policy, op="encode")
            if self._small(lm, uploads):  # header checks here; decoded in the batch's thread
                prometheus.BATCH_SIZE.labels("encode").observe(len(uploads.blobs))
                latents = await lm.batchers["encode"].submit(Undecoded(uploads, preprocess, self.image_policy))
            else:
                latents = await self._batched(lm, "encode", lm.images, uploads, preprocess, self.image_policy)
            return Encoded(lm.id, latents)

    async def encode_array(self, array: np.ndarray, model_id: str | None = None) -> Encoded:
        """An N×C×H×W array in the model's shape (the binary tensor path: no preprocessing) -> latents."""
        lm = self.serving(model_id)
        images = await self.run(tensors.images_of, array, lm.image_shape, self.settings.max_files)
        async with cancel_on_disconnect():
            if not self.settings.batch_enabled:
                return Encoded(lm.id, await self.run(lm.runner.encode, images, op="encode"))
            prometheus.BATCH_SIZE.labels("encode").observe(len(images))
            return Encoded(lm.id, await lm.batchers["encode"].submit(images))

    async def decode_array(self, body: bytes, npy: bool, model_id: str | None = None) -> tuple[str, np.ndarray]:
        """(model id, N×C×H×W float32 images) of latents sent as JSON or, ``npy``, as an .npy body."""
        lm = self.serving(model_id)
        s = self.settings

        def latents() -> np.ndarray:
            if npy:
                return tensors.latents_of(tensors.read_npy(body, "latents"), lm.latent_dim, s.max_latents, s.max_latent_abs)
            return lm.latents(body, s.max_latents, s.max_latent_abs)

        async with cancel_on_disconnect():
            images = await self.run(lm.runner.decode, await self.run(latents), op="decode")
        if not np.isfinite(images).all():
            raise InvalidInput("these latents decode to non-finite pixels; send smaller values", field="latents")
        return lm.id, images

    def _small(self, lm: LoadedModel, uploads: Uploads) -> bool:
        """Uploads small enough to check on the event loop and decode in the batch's thread (SMALL_UPLOAD_BYTES)."""
        if sum(map(len, uploads.blobs)) > SMALL_UPLOAD_BYTES:
            return False
        return lm.decoded_bytes(uploads, self.image_policy) <= SMALL_DECODED_BYTES

    async def decode(self, body: bytes, model_id: str | None = None) -> Decoded:
        """The raw JSON body is parsed in a thread: a 16 MB body must not block the event loop
        (a ``model_id`` inside it is checked there)."""
        lm = self.serving(model_id)
        s = self.settings
        async with cancel_on_disconnect():
            if not s.batch_enabled:
                return await self.run(lm.decode, body, s.max_latents, s.max_latent_abs, op="decode")
            pngs = await self._batched(lm, "decode", lm.latents, body, s.max_latents, s.max_latent_abs)
            return Decoded(lm.id, pngs)

    async def interpolate(
        self, uploads: Uploads, steps: int | None, method: Method, preprocess: str, fmt: MorphFormat, model_id: str | None = None
    ) -> Morph:
        steps = self.settings.default_steps if steps is None else steps
        STEPS.check("steps", steps, self.settings)
        lm = self.serving(model_id)
        async with cancel_on_disconnect():
            return await self.run(lm.interpolate, uploads, steps, method, preprocess, fmt, self.image_policy, op="interpolate")

    async def hallucinate(
        self, uploads: Uploads, labels: Sequence[str], plan: HallucinationPlan, model_id: str | None = None
    ) -> Hallucination:
        lm = self.serving(model_id)  # once: labels are checked against, and images encoded by, this model
        total = plan.most_images(len(lm.label_names))
        if total > HALLUCINATE_N.highest(self.settings):
            raise InvalidInput(
                f"asks for {total} images; allowed {HALLUCINATE_N.minimum}..{HALLUCINATE_N.highest(self.settings)} "
                f"({HALLUCINATE_N.env})",
                field="n" if plan.n is not None else "per_class",
            )
        async with cancel_on_disconnect():
            return await self.run(lm.hallucinate, uploads, labels, plan, self.image_policy, op="hallucinate")
