"""Every setting of the service, read from ``ATNL_*`` environment variables (or ``.env``).

Each tunable number is one named field with its unit and why it exists in the
docstring under it; routes, the engine and the worker read limits from here only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.bounds import STEPS, TRAIN_BOUNDS, env_name

OTHER_ATNL_NAMES = frozenset(
    {
        "ATNL_CACHE_DIR",  # where the benchmarks and `atnl eval` keep judges and trained runs (cache_dir)
        "ATNL_ENV_FILE",  # docker compose: the .env file its services read
        "ATNL_PUBLISH_ADDRESS",  # docker compose: host address the API's port is published on
        "ATNL_API_CUDA_MEMORY_FRACTION",  # docker compose: ATNL_CUDA_MEMORY_FRACTION of the api service
        "ATNL_WORKER_CUDA_MEMORY_FRACTION",  # docker compose: the same for the workers
        "ATNL_BENCH_CHECKPOINT",  # scripts/gpu-bench.sh
        "ATNL_BENCH_DEVICE",  # scripts/gpu-bench.sh
        "ATNL_BENCH_TORCH_THREADS",  # scripts/gpu-bench.sh
        "ATNL_TEST_ARTIFACTS",  # the browser tests' screenshot directory
        "ATNL_CHROMIUM",  # the browser tests' Chromium
    }
)
"""``ATNL_*`` names read by other parts of the project than the service's settings."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATNL_", env_file=".env", extra="ignore")

    # --- where things are
    redis_url: str = "redis://localhost:6379/0"
    """Redis holding the RQ training queue and job state. Inference never needs it."""
    model_store: Path | str = Path("./var/models")
    """The model store: checkpoints (one folder each), uploaded data sets and the ``ACTIVE``
    pointer. A directory (made absolute when read: a relative path is taken from the working
    directory), or ``s3://BUCKET/PREFIX`` for an S3-compatible server, with the endpoint and
    credentials from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``); the bucket is made
    if missing. API replicas and workers must all name the same store: each job carries the
    API's store id and fails at once, saying so, on a worker whose store differs."""
    model_cache: Path = Path("./var/cache")
    """Local directory where a process keeps what it downloads from an S3 store (checkpoints,
    keyed and verified by their content hash, and data sets) and stages what it uploads. Never
    shared between hosts; safe to delete while the process is stopped. A directory store reads
    its checkpoints in place and does not use it."""
    replica_id: str = ""
    """How this API process names itself in GET /v1/models and its logs; empty: ``<hostname>:<pid>``."""
    redis_activation_channel: bool = True
    """Announce every activation on a Redis channel and listen to it, so a swap reaches every API
    replica in under a second; the ACTIVE poll (ATNL_STORE_POLL_SECONDS) still follows it while
    Redis is down."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the API runs inference and, unless a job says otherwise, where jobs train."""
    cuda_memory_fraction: float | None = Field(None, gt=0, le=1)
    """Share of each GPU's memory this process may allocate (API: inference; worker: each job),
    so a big training job cannot run the API's inference out of CUDA memory on a shared GPU.
    Unset: no cap. Compose sets it for both."""
    host: str = "127.0.0.1"
    """Interface ``atnl serve`` binds (compose sets 0.0.0.0)."""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port ``atnl serve`` listens on."""
    api_token: SecretStr | None = None
    """When set, POST /v1/train, POST /v1/models/{id}/activate, DELETE /v1/jobs/{id}, POST /v1/datasets
    and DELETE /v1/datasets/{id} need ``Authorization: Bearer <token>``; reads and inference stay open.
    When unset, those answer loopback clients only (403 to any other address), and ``atnl serve``
    warns at start if it binds a non-loopback interface (docs/SECURITY.md)."""
    log_level: str = "info"
    """Python logging level of serve and worker."""

    # --- uploads
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    """Largest single uploaded image, bytes (a phone photo as JPEG fits)."""
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1)
    """Largest request body, bytes, counted while it streams in (chunked bodies included);
    a declared Content-Length above it is refused before reading."""
    max_json_bytes: int = Field(4 * 1024 * 1024, ge=1)
    """Largest non-multipart (JSON) request body, bytes: 1024 latents of 256 floats fit."""
    max_field_bytes: int = Field(64 * 1024, ge=1)
    """Largest non-file multipart field (labels, options), bytes, counted while reading."""
    max_pixels: int = Field(40_000_000, ge=1)
    """Largest image, width x height as its header declares, refused before decoding
    (decompression bombs)."""
    max_decoded_bytes: int = Field(128 * 1024 * 1024, ge=1)
    """Largest image in memory once decoded, bytes (pixels x bytes per pixel, after JPEG's
    reduced-scale decoding); refused before decoding. A 5600x5600 RGBA PNG fits."""
    max_request_decoded_bytes: int = Field(512 * 1024 * 1024, ge=1)
    """Work budget of one request: the decoded bytes of all its images together, refused
    before any is decoded (decoding time grows with it)."""
    max_files: int = Field(256, ge=1)
    """Most images in one encode or hallucinate request."""
    max_latents: int = Field(1024, ge=1)
    """Most latent vectors in one decode request."""
    max_latent_abs: float = Field(1e4, gt=0)
    """Largest absolute value of one latent coordinate in a decode request; larger finite
    values overflow float32 in the decoder and would come back as NaN images."""

    # --- data set uploads (POST /v1/datasets; service.archives, service.dataset_store)
    max_archive_bytes: int = Field(256 * 1024 * 1024, ge=1)
    """Largest uploaded data set archive (zip or tar.gz), bytes, counted while it streams in;
    that request's body may be 64 KiB more (multipart boundaries and headers), and neither
    ATNL_MAX_UPLOAD_BYTES nor ATNL_MAX_REQUEST_BYTES applies to it."""
    max_archive_members: int = Field(50_000, ge=1)
    """Most members (files and folders) in one archive, counted from its directory before
    anything is unpacked (a zip) or as its headers stream by (a tar.gz)."""
    max_archive_unpacked_bytes: int = Field(1024 * 1024 * 1024, ge=1)
    """Most bytes one archive may unpack to, all members together: declared by its headers,
    and counted again as they are written."""
    max_member_bytes: int = Field(16 * 1024 * 1024, ge=1)
    """Largest single member of an archive once unpacked, bytes (header and written bytes both)."""
    max_image_side: int = Field(128, ge=8)
    """Largest side of a model's square input: a training request's ``image_size`` at most, and
    the side an uploaded data set of larger images trains at when the request gives none."""
    max_compression_ratio: float = Field(200.0, ge=1)
    """Most a zip member, or a whole tar.gz, may inflate: unpacked bytes per compressed byte
    (zip bombs), checked from the headers and while unpacking; members under 64 KiB are exempt."""

    # --- inference
    max_steps: int = Field(64, ge=2)
    """Most frames one interpolation may ask for."""
    default_steps: int = Field(8, ge=2)
    """Frames of an interpolation when the request does not say (endpoints included)."""
    max_hallucinate_n: int = Field(2000, ge=1)
    """Most images one hallucinate request may make (n, or per_class x labels)."""
    gif_frame_ms: int = Field(120, ge=10)
    """Duration of one frame of an interpolation GIF, milliseconds."""
    inference_threads: int = Field(4, ge=1)
    """Inference calls running at once; more wait. Each uses ``torch_threads`` threads
    (by default the cores divided by this, so that the calls together fill the cores)."""
    store_poll_seconds: float = Field(2.0, gt=0)
    """How often the API re-reads the ACTIVE pointer (a conditional GET on S3: no body while it
    is unchanged), so a worker's ``activate: true`` or another replica's hot swap reaches this
    process even when the Redis announcement does not."""
    bootstrap_default_model: bool = True
    """On start with an empty store, train the default ATNL model on mnist-5k (in a
    child process, progress in the log) and activate it."""
    bootstrap_train: dict[str, Any] = {}
    """TrainConfig fields the first-start default model is trained with instead of the defaults
    (JSON, e.g. ``{"epochs": 5}``); empty: the library's defaults on mnist-5k. Replicas that
    start together on an empty store train it once (a lease object in the store)."""

    # --- inference speed (service.batching, service.model_runner; measured in reports/service.md)
    torch_threads: int = Field(0, ge=0)
    """torch intra-op threads of the API process; 0: the CPUs it may use (affinity, cgroup
    quota) divided by ATNL_INFERENCE_THREADS, at least 1, so inference threads x torch
    threads <= cores. More oversubscribes the cores: OpenMP workers spin waiting for each
    other, and on a busy 2-core machine a 64-image encode took 6x longer with 2 torch threads
    than with 1 while other inference threads ran."""
    batch_enabled: bool = True
    """Dynamic batching of encode and decode: concurrent requests on one model run as one
    forward. Off: each request runs its own forward."""
    batch_max_images: int = Field(256, ge=1)
    """Images (or latents) in one batched forward at most; a larger single request runs alone."""
    batch_max_delay_ms: float = Field(2.0, ge=0)
    """Longest a batch waits for requests still decoding their inputs, milliseconds; a request
    with none behind it runs at once."""
    batch_max_queued_images: int = Field(4096, ge=1)
    """Images waiting in one batch queue (one model, one operation) at most; a request that
    would overfill it gets 503 with Retry-After."""
    batch_retry_after_seconds: int = Field(1, ge=1)
    """Retry-After of a 503 from a full batch queue, seconds."""
    autocast: Literal["off", "bf16", "fp16"] = "off"
    """Run forwards under torch autocast in bfloat16 or float16 (meant for CUDA; works on CPU)."""
    torch_compile: bool = False
    """``torch.compile`` the model's encode, code and decode when it loads (minutes on CPU;
    the load, not a request, pays for it). Falls back to eager, logged, where it fails."""
    cuda_pin_memory: bool = True
    """On CUDA, copy batches through reused page-locked host buffers with non-blocking copies."""

    # --- training jobs
    queue_name: str = "training"
    """RQ queue the API enqueues on and ``atnl worker`` listens to."""
    job_timeout_seconds: int = Field(6 * 3600, ge=1)
    """A training job running longer is killed by the worker and marked failed."""
    result_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    """How long a finished job and its result stay in Redis."""
    failure_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    """How long a failed job and its error stay in Redis."""
    max_train_epochs: int = Field(500, ge=1)
    """Most epochs one training request may ask for."""
    max_train_batch_size: int = Field(1024, ge=1)
    """Largest ``batch_size`` a training request may ask for (memory grows with it, and the
    in-batch triplets with its cube)."""
    max_train_latent_dim: int = Field(512, ge=3)
    """Largest ``latent_dim`` a training request may ask for."""
    max_train_threads: int = Field(64, ge=1)
    """Largest ``threads`` (torch CPU threads) a training request may ask for."""
    max_queued_jobs: int = Field(20, ge=1)
    """Jobs waiting on the training queue at most; POST /v1/train answers 503 with Retry-After
    beyond it (a soft cap: two requests racing may both get in)."""
    queue_retry_after_seconds: int = Field(60, ge=1)
    """Retry-After of a 503 from a full training queue, seconds."""
    data_roots: list[Path] = []
    """Directories ``mnist-idx:DIR`` and ``folder:DIR`` data sets of POST /v1/train may be in
    (JSON list, e.g. ``["/data/digits"]``); empty: only the built-in data sets and uploads
    are open over HTTP. The CLI (``atnl train``) is not limited."""
    job_heartbeat_ttl_seconds: float = Field(30.0, gt=0)
    """A running job refreshes its heartbeat key every third of this; a job still "started" whose
    heartbeat is this old (worker killed, host lost) is reported and recorded as failed on the
    next look at it (GET /v1/jobs/{id}), so no job hangs "started"."""
    progress_interval_seconds: float = Field(2.0, ge=0)
    """Least time between two job-progress writes; the last step of each epoch is always written."""
    redis_timeout_seconds: float = Field(2.0, gt=0)
    """Connect and socket timeout of the API's Redis calls; past it training answers 503."""

    @field_validator("model_store", mode="before")
    @classmethod
    def _absolute_store(cls, value: object) -> object:
        """``s3://…`` stays a string; anything else is a directory, made absolute."""
        if isinstance(value, str) and value.startswith("s3://"):
            return value
        return Path(str(value)).expanduser().absolute() if isinstance(value, str | Path) else value

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_steps > self.max_steps:
            raise ValueError(f"{STEPS.default_env} ({self.default_steps}) must be at most {STEPS.env} ({self.max_steps})")
        return self

    def check_training_defaults(self, defaults: Mapping[str, Any]) -> None:
        """ValueError when a training request that leaves a field out would get a default above this
        deployment's maximum of it (``defaults``: TrainConfig's, by field name)."""
        over = [f"{name} {defaults[name]} > {bound.env} {bound.highest(self)}" for name, bound in TRAIN_BOUNDS.items()
                if defaults[name] > bound.highest(self)]  # fmt: skip
        if over:
            raise ValueError(f"the training defaults exceed this deployment's maxima: {'; '.join(over)}")


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where `atnl eval` and the benchmarks keep judges and trained runs: ATNL_CACHE_DIR, else ~/.cache/atnl."""
    return Path(environ.get("ATNL_CACHE_DIR") or Path.home() / ".cache" / "atnl")


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """``ATNL_*`` variables in ``environ`` that no part of the project reads (a misspelt setting)."""
    known = {env_name(name) for name in Settings.model_fields} | OTHER_ATNL_NAMES
    return sorted(name for name in environ if name.startswith("ATNL_") and name not in known)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment; an unknown ``ATNL_*`` variable is
    logged as a warning (settings ignore it, so a misspelt name would otherwise go unnoticed)."""
    for name in unknown_names(os.environ):
        logging.getLogger("atnl.settings").warning("%s is not a setting of this service; it is ignored", name)
    return Settings()
