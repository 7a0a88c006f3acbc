"""Fixtures of the client tests: one real `atnl serve` on a copy of the tiny checkpoint, with an
API token, on a redis-server of our own (the service tests' fixtures are theirs: not visible here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.servers import Server

TOKEN = "client-test-token"
MODEL_ID = "tiny"


@dataclass(frozen=True)
class Served:
    """A running `atnl serve`: its URL, token, model store and the environment a worker on it needs."""

    url: str
    token: str
    store: Path
    env: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, redis_url: str) -> Iterator[Served]:
    """`atnl serve` with ATNL_API_TOKEN on a store holding the tiny checkpoint as the active model ``tiny``."""
    workdir = tmp_path_factory.mktemp("client-api")
    store = workdir / "store"
    store.mkdir()
    shutil.copytree(tiny_checkpoint, store / MODEL_ID)
    (store / "ACTIVE").write_text(MODEL_ID + "\n")
    env = {
        "ATNL_MODEL_STORE": str(store),
        "ATNL_REDIS_URL": redis_url,
        "ATNL_PROGRESS_INTERVAL_SECONDS": "0.3",
        "ATNL_STORE_POLL_SECONDS": "0.5",
    }
    server = Server.serve({**env, "ATNL_API_TOKEN": TOKEN}, workdir)
    server.start()
    yield Served(server.url, TOKEN, store, env, workdir)
    server.stop(timeout=15)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
