"""The model families and the training options they are built from.

Each ``FamilySpec`` in ``FAMILIES`` owns its latent kind, the backbone config it
trains and the objective it trains with, both made from a ``TrainConfig`` (kept
here, beside the registry it is checked against; ``models.training`` runs it).

- ``atnl``: spherical latent with the labels on the order circle; reconstruction
  + ATNL + ordinal circle + label-free style + restyled label consistency + realism.
- ``ae``: Euclidean latent; reconstruction only (the paper's AE).
- ``vae``: Euclidean latent; reconstruction + β·KL to N(0, I).
- ``vae-tl``: the VAE plus a Euclidean triplet loss on the means (same label = positive).
- ``aae``, ``acai``: the adversarial baselines (``models.adversarial``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from models.adversarial import ACAIObjective, AdversarialAutoencoderObjective
from models.data import ImageSet
from models.errors import InputError
from models.losses import AngularTripletNeighborLoss, OrdinalCircleLoss
from models.networks import MIN_SIDE, ModelConfig, scaled_width
from models.objectives import ATNLObjective, AutoencoderObjective, Objective, VAEObjective
from models.order_circle import CIRCLE_SPAN, STYLE_RADIUS
from models.preprocess import PREPROCESSINGS

ObjectiveBuilder = Callable[["TrainConfig", int], Objective]
"""(training config, number of labels K) -> the family's objective."""


@dataclass(frozen=True)
class FamilySpec:
    name: str
    spherical: bool
    """Decoder consumes unit latents."""
    variational: bool
    """Encoder outputs (mu, logvar) and training samples z."""
    description: str
    build_objective: ObjectiveBuilder
    """How the family's objective is made from the training config."""
    ordered: bool = False
    """Labels laid along the order circle: the config's order-circle options apply (atnl)."""

    def objective(self, cfg: TrainConfig, num_labels: int) -> Objective:
        """The loss this family trains with, for ``num_labels`` ordinal labels."""
        return self.build_objective(cfg, num_labels)

    def model_config(self, cfg: TrainConfig, data: ImageSet) -> ModelConfig:
        """The backbone this family trains on ``data`` (N, C, H, W) with ``cfg``; the
        order-circle options are off unless the family is ``ordered``."""
        _, c, h, _ = data.images.shape
        ordered, head = self.ordered, self.ordered and cfg.ordinal_head
        return ModelConfig(
            latent_dim=cfg.latent_dim,
            channels=c,
            image_size=h,
            width=scaled_width(cfg.width, h) if cfg.scale_width else cfg.width,
            preprocess=data.preprocess,
            spherical=self.spherical,
            variational=self.variational,
            num_labels=data.num_labels if ordered else 0,
            circle_span=cfg.circle_span,
            sector_decoder=cfg.sector_decoder and ordered,
            unit_style_input=cfg.unit_style_input and cfg.sector_decoder and ordered,
            order_temperature=cfg.order_temperature,
            ordinal_head=head,
            snap_order_at_eval=cfg.snap_order_at_eval and head,
            style_angle=cfg.style_radius if cfg.fixed_style_angle and head else 0.0,
            label_reader=ordered and cfg.reader_epochs > 0,
        )


def atnl_objective(cfg: TrainConfig, num_labels: int) -> ATNLObjective:
    """The atnl objective with the weights and loss options of ``cfg``."""
    return ATNLObjective(
        AngularTripletNeighborLoss(cfg.margin, cfg.margin_schedule),
        OrdinalCircleLoss(num_labels, cfg.circle_span, cfg.style_radius, label_smoothing=cfg.label_smoothing),
        triplet_weight=cfg.triplet_weight,
        circle_weight=cfg.circle_weight,
        style_weight=cfg.style_weight,
        consistency_weight=cfg.consistency_weight,
        reconstruction_weight=cfg.reconstruction_weight,
        label_free_weight=cfg.label_free_weight,
        triplet_on_order=cfg.triplet_on_order,
        realism_weight=cfg.realism_weight,
    )


FAMILIES = {
    f.name: f
    for f in (
        FamilySpec(
            "atnl",
            spherical=True,
            variational=False,
            description="spherical latent, reconstruction + ATNL + ordinal circle",
            build_objective=atnl_objective,
            ordered=True,
        ),
        FamilySpec(
            "ae",
            spherical=False,
            variational=False,
            description="plain autoencoder, reconstruction only",
            build_objective=lambda cfg, k: AutoencoderObjective(),
        ),
        FamilySpec(
            "vae",
            spherical=False,
            variational=True,
            description="variational autoencoder",
            build_objective=lambda cfg, k: VAEObjective(cfg.beta),
        ),
        FamilySpec(
            "vae-tl",
            spherical=False,
            variational=True,
            description="VAE + Euclidean triplet loss on the means",
            build_objective=lambda cfg, k: VAEObjective(cfg.beta, triplet_weight=cfg.triplet_weight),
        ),
        FamilySpec(
            "aae",
            spherical=False,
            variational=False,
            description="adversarial autoencoder: codes matched to N(0, I) by a discriminator",
            build_objective=lambda cfg, k: AdversarialAutoencoderObjective(),
        ),
        FamilySpec(
            "acai",
            spherical=False,
            variational=False,
            description="adversarially constrained interpolation: a critic regresses the mix of decoded lerps",
            build_objective=lambda cfg, k: ACAIObjective(),
        ),
    )
}
"""Every family by the name ``TrainConfig.family``, the CLI and the API use."""


LR_SCHEDULES = ("cosine", "constant")
"""What ``TrainConfig.lr_schedule`` accepts."""


@dataclass
class TrainConfig:
    family: str = "atnl"
    """One of models.families.FAMILIES."""
    dataset: str = "mnist-5k"
    """A data set spec (docs/API.md §7)."""
    preprocess: str = "auto"
    """How the data set's pictures become the model's input, recorded in the model and applied
    to its requests (models.preprocess): ``digits`` (ink crop), ``fit`` (centre crop and resize,
    colour kept) or ``auto`` (a built-in set's own; ``fit`` for folders and uploads)."""
    image_size: int = 0
    """Side of the model's square input; 0: the data set's (a folder's or upload's smallest side)."""
    width: int = 32
    """Channels of the backbone's first conv layer (each further one doubles them, to 4x at most)."""
    scale_width: bool = False
    """Narrow ``width`` for images larger than 28x28 (``networks.scaled_width``: 16 at 48x48), so a
    step costs about what a 28x28 one does. Off by default: on pose-photos at 16 the ordinal head
    settled on the mirrored order (test accuracy 0.36 after 6 epochs, 1.00 at 32; docs/EXPERIMENTS.md)."""
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
    (see losses.restyled_label_consistency): what keeps paths readable between labels."""
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
    circle_span: float = CIRCLE_SPAN
    """Radians of great circle the label sectors cover together (< π)."""
    style_radius: float = STYLE_RADIUS
    """Radians a latent may lean off the order circle to carry style."""
    unit_style_input: bool = False
    """atnl: the decoder reads the style direction at unit norm (networks.ModelConfig.unit_style_input)."""
    fixed_style_angle: bool = True
    """atnl with the ordinal head: every latent leans exactly ``style_radius`` off the
    order circle (see networks.ModelConfig.style_angle)."""
    order_temperature: float = 0.25
    """atnl: temperature of the ordinal head's softmax when it places the order angle."""
    sector_decoder: bool = True
    """atnl: the decoder reads the nearest order sector (see order_circle.snap_order_angle)."""
    ordinal_head: bool = True
    """atnl: place the order angle by a K-way encoder head (see networks.SemanticAutoencoder.order_logits_and_code)."""
    snap_order_at_eval: bool = True
    """atnl with the ordinal head: a trained model places the order angle at its most
    likely sector's centre (see networks.ModelConfig.snap_order_at_eval)."""
    reader_epochs: int = 6
    """atnl: epochs of the label reader (models.reader), fitted on the real training images after
    the autoencoder, that hallucination's self-check asks beside the order head (at most ``epochs``
    of them: a quick run gets a quick reader); 0: no reader."""
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
            raise InputError(f"unknown family {self.family!r}; expected one of {sorted(FAMILIES)}")
        for name in ("epochs", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.preprocess not in ("auto", *PREPROCESSINGS):
            raise InputError(f"preprocess must be auto or one of {list(PREPROCESSINGS)}, got {self.preprocess!r}")
        if self.image_size and self.image_size < MIN_SIDE:
            raise InputError(f"image_size must be 0 (the data set's) or at least {MIN_SIDE}, got {self.image_size}")
        if self.width < 1:
            raise InputError(f"width must be >= 1, got {self.width}")
        if self.reader_epochs < 0:
            raise InputError(f"reader_epochs must be >= 0, got {self.reader_epochs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.latent_dim < 3 and FAMILIES[self.family].spherical:
            raise InputError("latent_dim must be >= 3 for a spherical family")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)
