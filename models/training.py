"""The training loop: ``train(cfg, data, on_progress=...)``.

Pure PyTorch; the CLI and the RQ task are thin wrappers around it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from models.augment import jitter
from models.data import ImageSet, split_indices
from models.device import resolve_device
from models.families import FAMILIES, ATNLObjective, AutoencoderObjective, Objective, VAEObjective
from models.losses import AngularTripletNeighborLoss, OrdinalCircleLoss
from models.networks import ModelConfig, SemanticAutoencoder
from models.sampling import class_balanced_batches

LR_SCHEDULES = ("cosine", "constant")
"""What ``TrainConfig.lr_schedule`` accepts."""


@dataclass
class TrainConfig:
    family: str = "atnl"
    """One of models.families.FAMILIES."""
    dataset: str = "mnist-5k"
    """A DESIGN §4 data set spec."""
    epochs: int = 40
    """Passes over the training split."""
    batch_size: int = 100
    """Items per class-balanced batch (at least the number of labels)."""
    lr: float = 1e-3
    """Adam learning rate (at the start, with ``lr_schedule``)."""
    lr_schedule: str = "cosine"
    """``cosine``: the rate falls to 0 over the run along a half cosine, step by step; ``constant``."""
    latent_dim: int = 32
    """Latent size d (every family; for atnl, 2 order axes and d - 2 style axes)."""
    margin: float = 0.1
    """ATNL angular margin m per unit of label gap, radians (adjacent sectors are 0.28 rad apart)."""
    margin_schedule: str = "gap"
    """``gap``: margin grows with the label gap; ``constant``."""
    triplet_weight: float = 5.0
    """λ_t, weight of the ATNL term."""
    circle_weight: float = 3.0
    """λ_c, weight of the ordinal circle term (0 turns it off)."""
    style_weight: float = 0.0
    """λ_s, weight of the style-invariance term (label share of the style axes' variance). Off:
    it reached label-free style by collapsing it (docs/EXPERIMENTS.md); ``label_free_weight`` does it."""
    consistency_weight: float = 3.0
    """atnl with the ordinal head: λ_k, weight of the restyled label consistency term
    (see families.restyled_label_consistency): what keeps paths readable between labels."""
    reconstruction_weight: float = 30.0
    """atnl: weight of the per-pixel mean BCE reconstruction term (small beside terms of order 1)."""
    label_free_weight: float = 10.0
    """atnl: weight of the label-free style term (losses.label_free_style)."""
    triplet_on_order: bool = True
    """atnl: apply ATNL to the order plane (latent axes 0, 1) only, not the whole latent."""
    realism_weight: float = 0.5
    """atnl: weight of the decoder's loss for fooling a patch critic that tells real images
    from restyled decodes (models.critic.RealismCritic)."""
    label_smoothing: float = 0.0
    """atnl: label smoothing ε of the ordinal circle's cross-entropy over sectors. 0.1 raised the
    mnist-5k probe (3 seeds) from 98.0% to 98.4% but lowered pose-digits' from 95.6% to 95.3%: off."""
    circle_span: float = 0.9 * math.pi
    """Radians of great circle the label sectors cover together (< π)."""
    style_radius: float = 0.6
    """Radians a latent may lean off the order circle to carry style."""
    unit_style_input: bool = False
    """atnl: the decoder reads the style direction at unit norm (networks.ModelConfig.unit_style_input)."""
    fixed_style_angle: bool = True
    """atnl with the ordinal head: every latent leans exactly ``style_radius`` off the
    order circle (see networks.ModelConfig.style_angle)."""
    order_temperature: float = 0.25
    """atnl: temperature of the ordinal head's softmax when it places the order angle."""
    sector_decoder: bool = True
    """atnl: the decoder reads the nearest order sector (see networks.snap_order_angle)."""
    ordinal_head: bool = True
    """atnl: place the order angle by a K-way encoder head (see networks.ordinal_head)."""
    snap_order_at_eval: bool = True
    """atnl with the ordinal head: a trained model places the order angle at its most
    likely sector's centre (see networks.ModelConfig.snap_order_at_eval)."""
    augment: bool = True
    """Small random affine jitter of training images (rotation, shift, scale)."""
    beta: float = 1.0
    """KL weight of the VAE families."""
    test_fraction: float = 0.2
    """Share of each label held out as the test split."""
    seed: int = 0
    """Seeds the split, the initial weights and the batches."""
    device: str = "auto"
    """auto, cpu or cuda."""
    threads: int = 0
    """CPU threads for torch (0: leave torch's default)."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {sorted(FAMILIES)}")
        for name in ("epochs", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.latent_dim < 3 and FAMILIES[self.family].spherical:
            raise ValueError("latent_dim must be >= 3 for a spherical family")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


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


def model_config_for(cfg: TrainConfig, data: ImageSet) -> ModelConfig:
    fam = FAMILIES[cfg.family]
    _, c, h, _ = data.images.shape
    ordered = cfg.family == "atnl"
    return ModelConfig(
        latent_dim=cfg.latent_dim,
        channels=c,
        image_size=h,
        spherical=fam.spherical,
        variational=fam.variational,
        num_labels=data.num_labels if ordered else 0,
        circle_span=cfg.circle_span,
        sector_decoder=cfg.sector_decoder and ordered,
        unit_style_input=cfg.unit_style_input and cfg.sector_decoder and ordered,
        order_temperature=cfg.order_temperature,
        ordinal_head=cfg.ordinal_head and ordered,
        snap_order_at_eval=cfg.snap_order_at_eval and cfg.ordinal_head and ordered,
        style_angle=cfg.style_radius if cfg.fixed_style_angle and cfg.ordinal_head and ordered else 0.0,
    )


def build_objective(cfg: TrainConfig, num_labels: int) -> Objective:
    if cfg.family == "atnl":
        atnl = AngularTripletNeighborLoss(cfg.margin, cfg.margin_schedule)
        circle = OrdinalCircleLoss(num_labels, cfg.circle_span, cfg.style_radius, label_smoothing=cfg.label_smoothing)
        weights = (cfg.triplet_weight, cfg.circle_weight, cfg.style_weight, cfg.consistency_weight)
        return ATNLObjective(
            atnl,
            circle,
            *weights,
            cfg.reconstruction_weight,
            cfg.label_free_weight,
            cfg.triplet_on_order,
            cfg.realism_weight,
        )
    if cfg.family == "ae":
        return AutoencoderObjective()
    if cfg.family == "vae":
        return VAEObjective(cfg.beta)
    if cfg.family == "vae-tl":
        return VAEObjective(cfg.beta, triplet_weight=cfg.triplet_weight)
    if cfg.family == "aae":
        from models.adversarial import AdversarialAutoencoderObjective

        return AdversarialAutoencoderObjective()
    if cfg.family == "acai":
        from models.adversarial import ACAIObjective

        return ACAIObjective()
    raise ValueError(f"family {cfg.family!r} has no objective")


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
    model = SemanticAutoencoder(model_config_for(cfg, data)).to(device)
    objective = build_objective(cfg, data.num_labels)
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

    model.eval()
    return TrainResult(model.cpu(), train_idx, test_idx, objective.describe(), history, time.monotonic() - start)
