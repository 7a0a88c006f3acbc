"""The independent judge: a small CNN trained on real images only.

It scores decoded frames for the semantic path score. The autoencoder never
sees it during training, so the decoder cannot learn to fool it. Judges are
cached on disk by (data set, split) since every evaluation of the same split
uses the same one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from models.augment import jitter
from models.data import ImageSet

JUDGE_VERSION = 4
"""Part of the cache key: bump when the architecture or recipe changes."""
JUDGE_EPOCHS = 10
"""Epochs over the training split."""
JUDGE_BATCH = 64


class JudgeCNN(nn.Module):
    """(N, C, H, W) in [0, 1], any side >= 4 -> (N, K) logits (the features pooled to 7×7,
    a 28×28 image's own after two 2× poolings)."""

    def __init__(self, num_labels: int, channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, H/4, W/4)
            nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Dropout(0.3),  # (N, 64 · 7 · 7)
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(128, num_labels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        """(N, 128) penultimate activations, the features of the Fréchet distance."""
        self.eval()
        return torch.cat([self.net[:-1](x[i : i + batch]) for i in range(0, len(x), batch)])

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        self.eval()
        return torch.cat([self(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])


def fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    seed: int,
    augment: bool = True,
    batch: int = JUDGE_BATCH,
    max_rotation: float = 10.0,
) -> nn.Module:
    """Train a classifier with Adam and cross-entropy on (x, y), with jitter if ``augment``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            xb = jitter(x[idx], g, degrees=max_rotation) if augment else x[idx]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def _cache_key(data: ImageSet, train_indices: list[int], seed: int) -> str:
    """The images' bytes are part of it: a data set whose recipe changes under the same spec gets a new judge."""
    h = hashlib.sha256(json.dumps([JUDGE_VERSION, data.spec, len(data), train_indices, seed]).encode())
    h.update(data.images.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def get_judge(
    data: ImageSet, train_indices: list[int], test_indices: list[int], seed: int = 0, cache_dir: Path | None = None
) -> tuple[JudgeCNN, float]:
    """A judge trained on ``data[train_indices]`` and its accuracy on ``data[test_indices]``; kept
    under ``cache_dir`` (and taken from there next time) when one is given."""
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's random state untouched
        torch.manual_seed(seed)
        judge = JudgeCNN(data.num_labels, data.images.shape[1])
    cache = None if cache_dir is None else cache_dir / "judges" / _cache_key(data, train_indices, seed)
    if cache is not None and (cache / "judge.safetensors").is_file():
        judge.load_state_dict(load_file(str(cache / "judge.safetensors")))
        judge.eval()
    else:
        fit_classifier(
            judge,
            data.images[train_indices],
            data.labels[train_indices],
            JUDGE_EPOCHS,
            seed,
            max_rotation=data.label_safe_rotation,
        )
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / "judge.safetensors.tmp"
            save_file(judge.state_dict(), str(tmp))
            os.replace(tmp, cache / "judge.safetensors")
    pred = judge.predict(data.images[test_indices])
    acc = (pred == data.labels[test_indices]).float().mean().item()
    return judge, acc
