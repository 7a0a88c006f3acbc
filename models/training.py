"""The training loop: ``train(cfg, data, on_progress=...)``.

Pure PyTorch; the CLI and the RQ task are thin wrappers around it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from models.augment import jitter
from models.data import ImageSet, split_indices
from models.device import resolve_device
from models.families import FAMILIES, LR_SCHEDULES, TrainConfig
from models.judge import fit_classifier
from models.networks import SemanticAutoencoder
from models.sampling import class_balanced_batches

__all__ = ["LR_SCHEDULES", "ProgressFn", "TrainConfig", "TrainResult", "TrainingStopped", "train"]


@dataclass
class TrainResult:
    model: SemanticAutoencoder
    train_indices: list[int]
    test_indices: list[int]
    objective: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class TrainingStopped(Exception):
    """Raised inside ``train`` when ``should_stop`` answers True."""


ProgressFn = Callable[[dict[str, Any]], None]


def fit_reader(model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, max_rotation: float) -> None:
    """Fit the model's label reader, if it has one, on its real training images (N, C, H, W) and
    labels (N,), once the decoder is done (so the decoder never trains against it): at most
    ``cfg.epochs`` epochs (a quick run gets a quick reader), seeded apart from the benchmarks' judge."""
    if model.reader is not None:
        fit_classifier(
            model.reader, x, y, min(cfg.reader_epochs, cfg.epochs), cfg.seed + 1, cfg.augment, max_rotation=max_rotation
        )


def train(
    cfg: TrainConfig,
    data: ImageSet,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train one model on the seeded train split of ``data``.

    ``on_progress`` gets a dict (epoch, epochs, step, steps, the step's
    learning rate lr, loss and its parts) after every step; ``should_stop`` is polled every step and raises
    TrainingStopped when it answers True."""
    start = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    train_idx, test_idx = split_indices(data.labels, cfg.test_fraction, cfg.seed)
    x_all = data.images[train_idx].to(device)
    y_all = data.labels[train_idx].to(device)

    torch.manual_seed(cfg.seed)
    family = FAMILIES[cfg.family]
    model = SemanticAutoencoder(family.model_config(cfg, data)).to(device)
    objective = family.objective(cfg, data.num_labels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = max(1, len(train_idx) // cfg.batch_size)
    total_steps = cfg.epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps)) if cfg.lr_schedule == "cosine" else 1.0
    )
    history: list[dict[str, float]] = []
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        totals: dict[str, float] = {}
        for step, idx in enumerate(class_balanced_batches(y_all.cpu(), cfg.batch_size, gen), start=1):
            if should_stop is not None and should_stop():
                raise TrainingStopped(f"stopped at epoch {epoch}, step {step}")
            idx = idx.to(device)
            xb = jitter(x_all[idx], gen, degrees=data.label_safe_rotation) if cfg.augment else x_all[idx]
            loss, parts = objective(model, xb, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            schedule.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}, step {step}")
            parts = {"loss": loss.item(), **parts}
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            if on_progress is not None:
                on_progress({"epoch": epoch, "epochs": cfg.epochs, "step": step, "steps": steps, "lr": lr, **parts})
        history.append({"epoch": epoch, **{k: v / steps for k, v in totals.items()}})

    fit_reader(model, x_all, y_all, cfg, data.label_safe_rotation)
    model.eval()
    return TrainResult(model.cpu(), train_idx, test_idx, objective.describe(), history, time.monotonic() - start)
