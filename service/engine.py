"""Inference: the loaded model, hot swap, and every tensor operation the routes need.

Routes never touch tensors: they pass bytes and numbers to ``Engine`` and get
numpy arrays back. Model calls run in worker threads (limited by
``ATNL_INFERENCE_THREADS``) so the event loop keeps answering.

Hot swap: the new checkpoint is loaded completely first, then ``current`` is
replaced by one assignment. A request takes ``current`` once at its start and
uses that model to its end, so it never sees half of a swap and never fails
because of one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import numpy as np
import torch

from models import CheckpointError, load_checkpoint
from models.device import resolve_device
from models.geometry import interpolate, normalize
from models.hallucination import STRATEGIES, hallucinate
from models.networks import SemanticAutoencoder
from service import imaging, metrics
from service.cuda_memory import limit_cuda_memory
from service.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge
from service.settings import Settings
from service.store import ModelStore

log = logging.getLogger("atnl.engine")
T = TypeVar("T")
METHODS = ("slerp", "lerp")
HALLUCINATION_STRATEGIES = STRATEGIES
"""What ``strategy`` of POST /v1/hallucinate accepts (see models.hallucination)."""


@dataclass(frozen=True)
class LoadedModel:
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


@dataclass
class Hallucinated:
    images: np.ndarray
    """(M, C, H, W) in [0, 1]."""
    labels: list[int]
    sources: list[tuple[int, int]]
    omegas: list[float]


def _tensor(images: np.ndarray, lm: LoadedModel) -> torch.Tensor:
    """(N, H, W) float numpy -> (N, C, H, W) on the model's device (grey repeated over C)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]  # (N, 1, H, W)
    channels = lm.model.cfg.channels
    return x.expand(-1, channels, -1, -1).contiguous().to(lm.device) if channels != 1 else x.to(lm.device)


def encode_images(lm: LoadedModel, images: np.ndarray) -> np.ndarray:
    """(N, H, W) in [0, 1] -> (N, d) unit latents."""
    with torch.inference_mode():
        return lm.model.encode(_tensor(images, lm)).cpu().numpy()


def decode_latents(lm: LoadedModel, latents: np.ndarray, max_abs: float) -> np.ndarray:
    """(N, d) latents, decoded as given -> (N, C, H, W) in [0, 1].

    Coordinates must be finite and within ±``max_abs`` (ATNL_MAX_LATENT_ABS): larger
    finite values overflow float32 in the decoder and come out as NaN."""
    if latents.ndim != 2 or latents.shape[1] != lm.latent_dim:
        raise InvalidInput(f"latents must be a list of vectors of length {lm.latent_dim} (model {lm.id})", field="latents")
    if not np.isfinite(latents).all():
        raise InvalidInput("latents must be finite numbers", field="latents")
    if np.abs(latents).max() > max_abs:
        raise InvalidInput(f"latents must lie within ±{max_abs:g} (ATNL_MAX_LATENT_ABS)", field="latents")
    with torch.inference_mode():
        z = torch.from_numpy(latents.astype(np.float32)).to(lm.device)
        images = lm.model.decode(z).cpu().numpy()
    if not np.isfinite(images).all():  # a model that overflows anyway: refuse rather than send NaN as black
        raise InvalidInput("these latents decode to non-finite pixels; send smaller values", field="latents")
    return images


def path_codes(c1: torch.Tensor, c2: torch.Tensor, omegas: torch.Tensor, method: str, spherical: bool) -> torch.Tensor:
    """(T, d) codes between decoder codes c1 and c2 (d,) at ``omegas`` (T,).

    Spherical models: slerp/lerp of their unit latents (lerp is decoded off the
    sphere, as the ATNL* ablation). Euclidean baselines: lerp of the codes, or
    for slerp the direction slerped and the length lerped (White, 2016)."""
    if spherical or method == "lerp":
        return interpolate(c1, c2, omegas, method)
    n1, n2 = c1.norm(), c2.norm()
    lengths = (1 - omegas) * n1 + omegas * n2  # (T,)
    return interpolate(normalize(c1), normalize(c2), omegas, "slerp") * lengths[:, None]


def interpolate_images(
    lm: LoadedModel, start: np.ndarray, end: np.ndarray, steps: int, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Two (H, W) images -> (omegas (T,), frames (T, C, H, W)), endpoints included."""
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {list(METHODS)}, got {method!r}")
    with torch.inference_mode():
        codes = lm.model.code(_tensor(np.stack([start, end]), lm))  # (2, d)
        omegas = torch.linspace(0.0, 1.0, steps, device=codes.device, dtype=codes.dtype)
        z = path_codes(codes[0], codes[1], omegas, method, lm.model.cfg.spherical)  # (T, d)
        return omegas.cpu().numpy(), lm.model.decode(z).cpu().numpy()


def hallucinate_images(
    lm: LoadedModel, images: np.ndarray, labels: list[int], per_class: int | None, n: int | None, strategy: str, seed: int
) -> Hallucinated:
    """A labelled few-shot set (N, H, W) -> new labelled images (see models.hallucination)."""
    x = _tensor(images, lm)
    y = torch.tensor(labels, dtype=torch.long)
    try:
        samples = hallucinate(lm.model, x, y, len(lm.label_names), per_class=per_class, n=n, strategy=strategy, seed=seed)
    except ValueError as e:
        raise InvalidInput(str(e)) from e
    out = (
        np.stack([s.image.cpu().numpy() for s in samples])
        if samples
        else np.zeros((0, 1, lm.image_size, lm.image_size), np.float32)
    )
    return Hallucinated(out, [s.label for s in samples], [s.sources for s in samples], [s.omega for s in samples])


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

    async def load_images(self, lm: LoadedModel, blobs: Sequence[bytes], fields: Sequence[str], preprocess: bool) -> np.ndarray:
        """Decode uploads for model ``lm`` (the one the request took once) -> (N, H, W) in [0, 1].

        Every header is checked first (pixels, decoded bytes, and their sum against
        ATNL_MAX_REQUEST_DECODED_BYTES), so a request over budget is refused before any
        image is decoded. Errors name the field (``files[3]``, ``start``)."""
        settings = self.settings
        limits = imaging.DecodeLimits(settings.max_pixels, settings.max_decoded_bytes)

        def decode_all() -> np.ndarray:
            total = sum(imaging.decoded_bytes(blob, limits, field) for blob, field in zip(blobs, fields, strict=True))
            if total > settings.max_request_decoded_bytes:
                raise PayloadTooLarge(
                    f"the images would take {total} bytes decoded together; the limit is "
                    f"{settings.max_request_decoded_bytes} (ATNL_MAX_REQUEST_DECODED_BYTES)",
                    field=fields[0].split("[")[0],
                )
            return np.stack(
                [
                    imaging.load_image(blob, lm.image_size, preprocess, limits, field)
                    for blob, field in zip(blobs, fields, strict=True)
                ]
            )

        return await self.run(decode_all, op="decode_images")
