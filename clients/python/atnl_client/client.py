"""The synchronous client: one method per operation of the API (``calls.OPERATIONS``)."""

from __future__ import annotations

import time
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


class Client:
    """A client of one ATNL server (or load balancer) at ``base_url``.

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = RetryPolicy(retries)
        self._http = httpx.Client(base_url=base_url, headers=session_headers(token), timeout=timeout, transport=transport)
        self._capabilities: calls.Capabilities | None = None
        self._models: ModelList | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: calls.Call[T]) -> T:
        """Send ``call`` (retried as ``self.retry`` says) and read its answer; ProblemError for an error answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(pause)
            attempt += 1

    def capabilities(self) -> calls.Capabilities:
        """What the server's OpenAPI document says it takes beyond forms and JSON (fetched once);
        none when it serves no document."""
        if self._capabilities is None:
            try:
                self._capabilities = self.send(calls.openapi())
            except (ProblemError, ValueError):  # no document (or not JSON): forms and JSON only
                self._capabilities = calls.Capabilities()
        return self._capabilities

    def _fits_model(self, images: Array, model_id: str | None) -> bool:
        return calls.fits(images, self._models or self.models(), model_id)

    # Inference

    def encode(self, images: Images, model_id: str | None = None, preprocess: str | None = None) -> Encoded:
        """Images -> ``.latents`` (N, d) float32 unit vectors, in input order.

        Arrays already in the model's (C, H, W) (its ``image_shape``), when no ``preprocess`` is
        asked, are the model's input as they are: sent as one npy array where the server takes
        one, else as PNG files with ``preprocess=none``. Everything else (paths, bytes, PIL images,
        arrays of other sizes) is sent as files and prepared by ``preprocess`` (default: the model's own)."""
        batch = ImageBatch.of(images)
        caps = self.capabilities()
        array = calls.model_input(batch, preprocess)
        if array is not None and self._fits_model(array, model_id):
            try:
                return self.send(calls.encode_model_input(batch, array, model_id, caps))
            except InvalidInput:
                self._models = None  # a swap may have changed the model's shape: look again
                if self._fits_model(array, model_id):
                    raise
        return self.send(calls.encode_images(batch, model_id, preprocess, caps))

    def decode(self, latents: npt.ArrayLike, model_id: str | None = None) -> Decoded:
        """Latents (N, d), an array or a list of vectors -> ``.images``, N PIL images."""
        return self.send(calls.decode_call(latents, model_id, self.capabilities(), calls.read_decoded))

    def decode_array(self, latents: npt.ArrayLike, model_id: str | None = None) -> npt.NDArray[np.float32]:
        """Latents (N, d) -> (N, C, H, W) float32 images in [0, 1]."""
        return self.send(calls.decode_call(latents, model_id, self.capabilities(), calls.read_decoded_array))

    def interpolate(
        self,
        start: ImageInput,
        end: ImageInput,
        steps: int | None = None,
        method: str = "slerp",
        model_id: str | None = None,
        preprocess: str | None = None,
    ) -> Interpolation:
        """Two images -> ``.frames`` (``steps`` PIL images, endpoints included) and their ``.omegas``, 0 to 1."""
        return self.send(calls.interpolate(ImageBatch.of(start), ImageBatch.of(end), steps, method, model_id, preprocess))

    def hallucinate(
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
        return self.send(calls.hallucinate(ImageBatch.of(images), labels, options))

    # Models

    def models(self) -> ModelList:
        self._models = self.send(calls.list_models())
        return self._models

    def activate(self, model_id: str) -> Activation:
        """Hot swap to ``model_id``: loaded completely, then served."""
        self._models = None
        return self.send(calls.activate_model(model_id))

    # Training

    def train(self, **config: Any) -> Job:
        """Enqueue a training job: any TrainConfig field (``epochs=1``, ``dataset="upload:ID"``, ...)
        and ``activate``. The job runs on the server's workers."""
        accepted = self.send(calls.train(config))
        return Job(self, JobState(accepted.job_id, "queued", None, None, None), accepted.status_url)

    def get_job(self, job_id: str) -> Job:
        return Job(self, self.send(calls.get_job(job_id)))

    def cancel_job(self, job_id: str) -> str:
        """Cancel a queued job or stop a running one: ``canceled`` or ``stopped``."""
        return self.send(calls.cancel_job(job_id)).status

    # Data sets

    def upload_dataset(self, archive: str | Path | bytes, filename: str | None = None) -> Dataset:
        """Upload a zip or tar.gz of labelled images (a path, or its bytes)."""
        return self.send(calls.upload_dataset(archive, filename))

    def datasets(self) -> list[Dataset]:
        return self.send(calls.list_datasets())

    def dataset(self, dataset_id: str) -> Dataset:
        return self.send(calls.get_dataset(dataset_id))

    def delete_dataset(self, dataset_id: str) -> None:
        self.send(calls.delete_dataset(dataset_id))

    # The server

    def health(self) -> Health:
        return self.send(calls.healthz())

    def ready(self) -> bool:
        """Whether a model is loaded and usable (GET /readyz is 200); not retried."""
        return self.send(calls.readyz())

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return self.send(calls.prometheus_metrics())

    def auth(self) -> AuthInfo:
        return self.send(calls.auth())

    def samples(self, per_label: int = 4) -> Samples:
        """The first ``per_label`` test images of each label of the active model."""
        return self.send(calls.list_samples(per_label))

    def sample(self, index: int) -> Image.Image:
        return self.send(calls.get_sample(index))

    def latent_map(self) -> LatentMap:
        return self.send(calls.get_latent_map())


class Job(JobRecord):
    """A training job; ``refresh()`` looks at it again, ``wait()`` until it ends."""

    def __init__(self, client: Client, state: JobState, status_url: str | None = None) -> None:
        super().__init__(state, status_url)
        self._client = client

    def refresh(self) -> Job:
        self.state = self._client.send(calls.get_job(self.id))
        return self

    def wait(
        self,
        progress: Callable[[dict[str, Any]], object] | None = None,
        poll: float = DEFAULT_POLL_SECONDS,
        timeout: float | None = None,
    ) -> Job:
        """Look at the job every ``poll`` seconds until it ends (finished, failed, stopped or canceled)
        and return it; ``progress`` gets each new progress dict. TimeoutError after ``timeout`` s."""
        watch = JobWatch(poll, timeout)
        while True:
            news, pause = watch.look(self.refresh().state)
            if news is not None and progress is not None:
                progress(news)
            if pause is None:
                return self
            time.sleep(pause)

    def cancel(self) -> str:
        """Cancel it if queued (``canceled``), stop it if running (``stopped``)."""
        return self._client.cancel_job(self.id)
