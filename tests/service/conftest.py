"""Fixtures of the service tests: a real redis-server, a model store holding a real
tiny checkpoint, the ASGI app driven through httpx, and real PNG/JPEG bytes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from httpx import AsyncClient
from redis import Redis

from service.settings import Settings
from tests.service.helpers import RedisServer, client_for


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port; the run fails (never skips) if it cannot start."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server.url
    server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    """A client on the test Redis, flushed before and after each test."""
    conn = Redis.from_url(redis_url)
    conn.flushall()
    yield conn
    conn.flushall()
    conn.close()


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
