"""Shared fixtures: a real (tiny) trained checkpoint on the embedded MNIST digits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Keep test runs on 2-core CI machines predictable and the judge cache inside the run.
torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_TRAIN = {"family": "atnl", "dataset": "mnist-5k", "epochs": 2, "latent_dim": 8, "seed": 0, "device": "cpu"}
"""A real but tiny ATNL run (a few seconds on 2 CPU threads)."""


@pytest.fixture(scope="session")
def mnist_5k():
    from models.data import load_dataset

    return load_dataset("mnist-5k")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, mnist_5k) -> Path:
    """Directory of a real ATNL checkpoint trained for two epochs on mnist-5k."""
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    out = tmp_path_factory.mktemp("ckpt") / "tiny-atnl"
    return train_to_checkpoint(TrainConfig(**TINY_TRAIN), out, data=mnist_5k)


SMALL_TRAIN = {**TINY_TRAIN, "epochs": 8, "latent_dim": 16, "realism_weight": 0.0}
"""An ATNL run long enough to draw digits an outside classifier reads (about a minute on 2 CPU
threads; no realism critic, a quarter of the step's cost): for tests of what the images show."""


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory, mnist_5k) -> Path:
    """Directory of a real ATNL checkpoint trained for eight epochs on mnist-5k."""
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    out = tmp_path_factory.mktemp("ckpt") / "small-atnl"
    return train_to_checkpoint(TrainConfig(**SMALL_TRAIN), out, data=mnist_5k)


@pytest.fixture(scope="session")
def atnl_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ATNL_CACHE_DIR set to a per-session directory (where judges and bench models are cached)."""
    cache = tmp_path_factory.mktemp("atnl-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATNL_CACHE_DIR", str(cache))
        yield cache


def first_of_each_label(data, per_label: int):
    """The first ``per_label`` items of each label, in label order (an ImageSet)."""
    idx = torch.cat([(data.labels == k).nonzero().squeeze(1)[:per_label] for k in range(data.num_labels)])
    return data.subset(idx)


@pytest.fixture(scope="session")
def mnist_500(mnist_5k):
    """500 real digits: the first 50 of each label, in label order."""
    return first_of_each_label(mnist_5k, 50)


@pytest.fixture(scope="session")
def digits_100(mnist_5k):
    """100 real digits: the first 10 of each label."""
    return first_of_each_label(mnist_5k, 10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port; the run fails (never skips) if it cannot start."""
    from tests.service.helpers import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server.url
    server.stop()
