"""Fixtures of the models/ unit tests: a hermetic judge cache, small real subsets, small models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import settings

from models.networks import ModelConfig, SemanticAutoencoder

# No example database (nothing written into the working tree) and no deadline
# (the first torch call of a process is slow).
settings.register_profile("unit", database=None, deadline=None, max_examples=60)
settings.load_profile("unit")


@pytest.fixture
def make_model() -> Callable[..., SemanticAutoencoder]:
    """Factory of untrained, seeded, narrow backbones for 28×28 grey images (fast on CPU)."""

    def make(
        spherical: bool = True, variational: bool = False, latent_dim: int = 6, seed: int = 0, **extra: Any
    ) -> SemanticAutoencoder:
        torch.manual_seed(seed)
        cfg = ModelConfig(latent_dim=latent_dim, width=4, hidden=32, spherical=spherical, variational=variational, **extra)
        return SemanticAutoencoder(cfg).eval()

    return make
