"""Fixtures of the benchmark tests: a hermetic judge cache and tiny real data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.data import ImageSet


@pytest.fixture(scope="session")
def bench_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ATNL_CACHE_DIR set to a per-session directory, so judges trained here never leak into ~/.cache."""
    cache = tmp_path_factory.mktemp("bench-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATNL_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="session")
def digits_100(mnist_5k: ImageSet) -> ImageSet:
    """100 real digits: the first 10 of each label."""
    idx = torch.cat([(mnist_5k.labels == k).nonzero().squeeze(1)[:10] for k in range(mnist_5k.num_labels)])
    return mnist_5k.subset(idx)
