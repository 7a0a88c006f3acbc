"""Fixtures of the models/ unit tests: a hermetic judge cache, small real subsets, small models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from models.data import ImageSet
from models.networks import ModelConfig, SemanticAutoencoder

# No example database (nothing written into the working tree) and no deadline
# (the first torch call of a process is slow).
settings.register_profile("unit", database=None, deadline=None, max_examples=60)
settings.load_profile("unit")


@pytest.fixture(scope="session")
def atnl_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ATNL_CACHE_DIR set to a per-session directory (where `atnl eval` caches its judge)."""
    cache = tmp_path_factory.mktemp("atnl-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATNL_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="session")
def mnist_500(mnist_5k: ImageSet) -> ImageSet:
    """500 real digits: the first 50 of each label, in label order."""
    idx = torch.cat([(mnist_5k.labels == k).nonzero().squeeze(1)[:50] for k in range(mnist_5k.num_labels)])
    return mnist_5k.subset(idx)


@pytest.fixture
def make_model() -> Callable[..., SemanticAutoencoder]:
    """Factory of untrained, seeded, narrow backbones for 28×28 grey images (fast on CPU)."""

    def make(spherical: bool = True, variational: bool = False, latent_dim: int = 6, seed: int = 0) -> SemanticAutoencoder:
        torch.manual_seed(seed)
        cfg = ModelConfig(latent_dim=latent_dim, width=4, hidden=32, spherical=spherical, variational=variational)
        return SemanticAutoencoder(cfg).eval()

    return make
