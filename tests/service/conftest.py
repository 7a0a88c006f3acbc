"""Fixtures of the service tests: a real redis-server, a model store holding a real
tiny checkpoint (and a tiny colour one), the ASGI app driven through httpx, and real PNG/JPEG bytes."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from httpx import AsyncClient
from redis import Redis

from service.settings import Settings
from tests.service.helpers import S3_BUCKET, S3Server, client_for


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    """A client on the test Redis, flushed before and after each test."""
    conn = Redis.from_url(redis_url)
    conn.flushall()
    yield conn
    conn.flushall()
    conn.close()


COLOUR_SIDE = 24
"""Side of the colour checkpoint's pictures: not MNIST's 28, and small enough to train in seconds."""
COLOUR_PER_LABEL = 12
"""pose-photos tiles of each of its nine labels in the colour folder (108 in all)."""
COLOUR_TRAIN = {"family": "atnl", "epochs": 1, "batch_size": 18, "latent_dim": 8, "realism_weight": 0.0, "seed": 0}
"""A real but tiny ATNL run on the colour folder (seconds): what is tested is the path, not the quality."""


@pytest.fixture(scope="session")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled folder (``folder:DIR``) of real colour pictures: COLOUR_PER_LABEL pose-photos
    tiles of each label, at COLOUR_SIDE, label names "-60deg" .. "+60deg" in labels.txt's order."""
    import torch

    from models.data import load_dataset
    from models.photo_sets import archive_members

    photos = load_dataset("pose-photos", image_size=COLOUR_SIDE)
    keep = torch.cat([(photos.labels == k).nonzero().squeeze(1)[:COLOUR_PER_LABEL] for k in range(photos.num_labels)])
    root = tmp_path_factory.mktemp("colour") / "pose-photos"
    for name, body in archive_members(photos.subset(keep)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


@pytest.fixture(scope="session")
def colour_checkpoint(tmp_path_factory: pytest.TempPathFactory, colour_folder: Path) -> Path:
    """Directory of a real ATNL checkpoint trained for one epoch on ``colour_folder``: it reads
    and makes (3, 24, 24) pictures, prepared by ``fit``, labels "-60deg" .. "+60deg"."""
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    cfg = TrainConfig(dataset=f"folder:{colour_folder}", device="cpu", **COLOUR_TRAIN)
    return train_to_checkpoint(cfg, tmp_path_factory.mktemp("ckpt") / "colour-atnl")


@pytest.fixture
def store_dir(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """A model store with the tiny checkpoint as model ``tiny`` (not yet ACTIVE)."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copytree(tiny_checkpoint, store / "tiny")
    return store


@pytest.fixture
def settings(store_dir: Path, redis_url: str) -> Settings:
    return Settings(
        model_store=store_dir,
        redis_url=redis_url,
        device="cpu",
        bootstrap_default_model=False,
        store_poll_seconds=0.1,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(settings: Settings, redis_conn: Redis) -> AsyncIterator[AsyncClient]:
    """The app (lifespan run) behind an httpx client, on the tiny model, against the test Redis."""
    async for c in client_for(settings):
        yield c


@pytest.fixture(scope="session")
def digits(mnist_5k, tiny_checkpoint: Path) -> dict[int, list[np.ndarray]]:
    """Test-split digits of the tiny checkpoint, 5 per label: {label: [(28, 28) arrays]}."""
    from models import read_meta

    test_idx = read_meta(tiny_checkpoint)["data"]["test_indices"]
    out: dict[int, list[np.ndarray]] = {k: [] for k in range(10)}
    for i in test_idx:
        label = int(mnist_5k.labels[i])
        if len(out[label]) < 5:
            out[label].append(mnist_5k.images[i, 0].numpy())
    return out


@pytest.fixture
def client_factory():
    """``client_for`` as a fixture, for tests that need the app on their own settings."""
    return client_for


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server of our own (SeaweedFS) on free loopback ports; the run fails (never
    skips) if it cannot start. Each test takes a fresh prefix of its bucket (``s3_location``)."""
    try:
        server = S3Server(tmp_path_factory.mktemp("s3")).start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server
    server.stop()


@pytest.fixture
def s3_location(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://bucket/prefix`` store on the test S3 server, with this process's AWS_*
    variables pointing boto3 at it."""
    for name, value in s3_server.store_env("").items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"
