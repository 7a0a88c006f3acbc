"""Shared fixtures: a real (tiny) trained checkpoint on the embedded MNIST digits."""

from __future__ import annotations

import os
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
