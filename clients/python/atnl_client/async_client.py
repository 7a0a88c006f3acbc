"""The asynchronous client: ``Client``'s methods, each a coroutine (``async with AsyncClient(...)``)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image

from atnl_client import calls
from atnl_client.answers import (
    Activation,
    AuthInfo,
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
)
from atnl_client.errors import InvalidInput, ProblemError, problem_error
from atnl_client.images import Array, ImageBatch, ImageInput, Images
from atnl_client.jobs import DEFAULT_POLL_SECONDS, JobRecord, JobWatch
from atnl_client.retrying import DEFAULT_RETRIES, RetryPolicy
from atnl_client.session import DEFAULT_TIMEOUT_SECONDS, session_headers

T = TypeVar("T")


class AsyncClient:
    """An asyncio client of one ATNL server (or load balancer) at ``base_url``; as ``Client``.

    ``token``: sent as ``Authorization: Bearer`` (training, activation, cancel and data set
    changes need it where the server has one). ``timeout``: seconds per request.
    ``retries``: how often a 503 (or a connection error on a GET) is tried again, after the
    server's Retry-After or a capped backoff. Every error answer raises a ``ProblemError``.
    Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = DEFAULT_RETRIES,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = RetryPolicy(retries)
        self._http = httpx.AsyncClient(base_url=base_url, headers=session_headers(token), timeout=timeout, transport=transport)
        self._capabilities: calls.Capabilities | None = None
        self._models: ModelList | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, call: calls.Call[T]) -> T:
        """Send ``call`` (retried as ``self.retry`` says) and read its answer; ProblemError for an error answer."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    data=call.data,
                    files=call.files,
                    content=call.content,
                    headers=call.headers,
                )
            except httpx.TransportError:
                pause = self.retry.after_error(attempt, call.method)
                if pause is None:
                    raise
            else:
                if response.is_success or response.status_code in call.answers:
                    return call.read(response)
                pause = self.retry.after_answer(attempt, response)
                if pause is None:
                    raise problem_error(response)
            await asyncio.sleep(pause)
            attempt += 1

    async def capabilities(self) -> calls.Capabilities:
        """What the server's OpenAPI document says it takes beyond forms and JSON (fetched once);
        none when it serves no document."""
        if self._capabilities is None:
            try:
                self._capabilities = await self.send(calls.openapi())
            except (ProblemError, ValueError):  # no document (or not JSON): forms and JSON only
                self._capabilities = calls.Capabilities()
        return self._capabilities

    async def _fits_model(self, images: Array, model_id: str | None) -> bool:
        return calls.fits(images, self._models or await self.models(), model_id)

    # Inference

    async def encode(self, images: Images, model_id: str | None = None, preprocess: str | None = None) -> Encoded:
        """Images -> ``.latents`` (N, d) float32 unit vectors, in input order.

        Arrays already in the model's (C, H, W) (its ``image_shape``), when no ``preprocess`` is
        asked, are the model's input as they are: sent as one npy array where the server takes
        one, else as PNG files with ``preprocess=none``. Everything else (paths, bytes, PIL images,
        arrays of other sizes) is sent as files and prepared by ``preprocess`` (default: the model's own)."""
        batch = ImageBatch.of(images)
        caps = await self.capabilities()
        array = calls.model_input(batch, preprocess)
        if array is not None and await self._fits_model(array, model_id):
            try:
                return await self.send(calls.encode_model_input(batch, array, model_id, caps))
            except InvalidInput:
                self._models = None  # a swap may have changed the model's shape: look again
                if await self._fits_model(array, model_id):
                    raise
        return await self.send(calls.encode_images(batch, model_id, preprocess, caps))

    async def decode(self, latents: npt.ArrayLike, model_id: str | None = None) -> Decoded:
        """Latents (N, d), an array or a list of vectors -> ``.images``, N PIL images."""
        return await self.send(calls.decode_call(latents, model_id, await self.capabilities(), calls.read_decoded))

    async def decode_array(self, latents: npt.ArrayLike, model_id: str | None = None) -> npt.NDArray[np.float32]:
        """Latents (N, d) -> (N, C, H, W) float32 images in [0, 1]."""
        return await self.send(calls.decode_call(latents, model_id, await self.capabilities(), calls.read_decoded_array))

    async def interpolate(
        self,
        start: ImageInput,
        end: ImageInput,
        steps: int | None = None,
        method: str = "slerp",
        model_id: str | None = None,
        preprocess: str | None = None,
    ) -> Interpolation:
        """Two images -> ``.frames`` (``steps`` PIL images, endpoints included) and their ``.omegas``, 0 to 1."""
        return await self.send(calls.interpolate(ImageBatch.of(start), ImageBatch.of(end), steps, method, model_id, preprocess))

    async def hallucinate(
        self,
        images: Images,
        labels: Sequence[str | int],
        per_class: int | None = None,
        n: int | None = None,
        strategy: str | None = None,
        seed: int = 0,
        filter: str | None = None,
        model_id: str | None = None,
        preprocess: str | None = None,
    ) -> Hallucination:
        """Labelled images (one label each) -> ``.images``, new labelled images (``per_class`` of every
        label, or ``n`` in all), with the uploads the model reads otherwise and its self-check."""
        options = calls.HallucinationOptions(per_class, n, strategy, seed, filter, model_id, preprocess)
        return await self.send(calls.hallucinate(ImageBatch.of(images), labels, options))

    # Models

    async def models(self) -> ModelList:
        self._models = await self.send(calls.list_models())
        return self._models

    async def activate(self, model_id: str) -> Activation:
        """Hot swap to ``model_id``: loaded completely, then served."""
        self._models = None
        return await self.send(calls.activate_model(model_id))

    # Training

    async def train(self, **config: Any) -> AsyncJob:
        """Enqueue a training job: any TrainConfig field (``epochs=1``, ``dataset="upload:ID"``, ...)
        and ``activate``. The job runs on the server's workers."""
        accepted = await self.send(calls.train(config))
        return AsyncJob(self, JobState(accepted.job_id, "queued", None, None, None), accepted.status_url)

    async def get_job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, await self.send(calls.get_job(job_id)))

    async def cancel_job(self, job_id: str) -> str:
        """Cancel a queued job or stop a running one: ``canceled`` or ``stopped``."""
        return (await self.send(calls.cancel_job(job_id))).status

    # Data sets

    async def upload_dataset(self, archive: str | Path | bytes, filename: str | None = None) -> Dataset:
        """Upload a zip or tar.gz of labelled images (a path, or its bytes)."""
        return await self.send(calls.upload_dataset(archive, filename))

    async def datasets(self) -> list[Dataset]:
        return await self.send(calls.list_datasets())

    async def dataset(self, dataset_id: str) -> Dataset:
        return await self.send(calls.get_dataset(dataset_id))

    async def delete_dataset(self, dataset_id: str) -> None:
        await self.send(calls.delete_dataset(dataset_id))

    # The server

    async def health(self) -> Health:
        return await self.send(calls.healthz())

    async def ready(self) -> bool:
        """Whether a model is loaded and usable (GET /readyz is 200); not retried."""
        return await self.send(calls.readyz())

    async def metrics(self) -> str:
        """The Prometheus text exposition."""
        return await self.send(calls.prometheus_metrics())

    async def auth(self) -> AuthInfo:
        return await self.send(calls.auth())

    async def samples(self, per_label: int = 4) -> Samples:
        """The first ``per_label`` test images of each label of the active model."""
        return await self.send(calls.list_samples(per_label))

    async def sample(self, index: int) -> Image.Image:
        return await self.send(calls.get_sample(index))

    async def latent_map(self) -> LatentMap:
        return await self.send(calls.get_latent_map())


class AsyncJob(JobRecord):
    """A training job; ``await refresh()`` looks at it again, ``await wait()`` until it ends (``progress``
    may be a plain function or a coroutine function)."""

    def __init__(self, client: AsyncClient, state: JobState, status_url: str | None = None) -> None:
        super().__init__(state, status_url)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self.state = await self._client.send(calls.get_job(self.id))
        return self

    async def wait(
        self,
        progress: Callable[[dict[str, Any]], object] | None = None,
        poll: float = DEFAULT_POLL_SECONDS,
        timeout: float | None = None,
    ) -> AsyncJob:
        """Look at the job every ``poll`` seconds until it ends (finished, failed, stopped or canceled)
        and return it; ``progress`` gets each new progress dict. TimeoutError after ``timeout`` s."""
        watch = JobWatch(poll, timeout)
        while True:
            news, pause = watch.look((await self.refresh()).state)
            if news is not None and progress is not None and inspect.isawaitable(told := progress(news)):
                await told
            if pause is None:
                return self
            await asyncio.sleep(pause)

    async def cancel(self) -> str:
        """Cancel it if queued (``canceled``), stop it if running (``stopped``)."""
        return await self._client.cancel_job(self.id)
