"""Encoder/decoder backbone shared by every family (atnl, ae, vae, ...).

Imports only torch. The architecture is fixed by ``ModelConfig``, which is
saved in the checkpoint so that loading needs nothing else.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import InputError
from models.geometry import normalize
from models.order_circle import CIRCLE_SPAN, at_lean, order_angle, sector_centres, sector_decoding, snap_order_angle
from models.reader import LabelReader


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 16
    """Size d of the latent; ATNL latents live on S^{d-1}."""
    channels: int = 1
    """Image channels C (1 for grey digits)."""
    image_size: int = 28
    """Height = width of the images, at least MIN_SIDE; the conv stack has one stride-2 layer
    per halving down to a grid of at most 8 (``conv_sides``)."""
    preprocess: str = "digits"
    """How a picture becomes this model's input (``models.preprocess``): ``digits`` or ``fit``."""
    width: int = 32
    """Channels of the first conv layer; the second has twice as many."""
    hidden: int = 256
    """Width of the fully connected layer between the convs and the latent."""
    spherical: bool = True
    """Decoder consumes unit latents (atnl); False for Euclidean baselines (ae, vae, ...)."""
    variational: bool = False
    """Encoder outputs (mu, logvar) and training samples z (vae, vae-tl)."""
    num_labels: int = 0
    """K ordinal labels laid along the order circle; 0: no order circle (baselines)."""
    circle_span: float = CIRCLE_SPAN
    """Radians of the order circle (latent axes 0 and 1) the K label sectors cover."""
    sector_decoder: bool = False
    """Decoder reads the order angle snapped to its nearest sector centre, and that
    sector as a one-hot (see ``order_circle.snap_order_angle``)."""
    ordinal_head: bool = False
    """Encoder places the order angle by a K-way head: ψ = Σ_k p_k φ_k (see ``order_logits_and_code``)."""
    order_temperature: float = 1.0
    """p = softmax(logits / T): T < 1 puts an uncertain image nearer its most likely sector
    than halfway between two far ones (a 4-or-9 would otherwise sit at 6.5)."""
    snap_order_at_eval: bool = False
    """Ordinal head, out of training: ψ = the most likely sector's centre. The soft ψ of
    an image torn between two far labels lies in a third label's sector, where a probe
    (and the decoder) misread it; training keeps the soft ψ for its gradients."""
    unit_style_input: bool = False
    """Sector decoder: read the order plane at unit radius and the style direction at unit
    norm, whatever the lean, so the lean (``style_angle``) shapes only the public latent."""
    style_angle: float = 0.0
    """Ordinal head: radians every latent leans off the order circle, fixed (the style
    axes give only a direction); 0: free, set by the style outputs' norm. Fixed, every
    latent sits on one small circle around the order plane's normal, so label sectors
    are linearly separable; free, an item far off the circle lies nearer a neighbour
    sector's centre than its own and a linear probe misreads it."""
    label_reader: bool = False
    """A ``reader.LabelReader`` for the K labels is part of the model (trained on real images
    after the autoencoder; ``label_probs`` asks it beside the order head)."""
    reader_width: int = 16
    """Channels of the label reader's first convolution (its second has twice as many)."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


MIN_SIDE = 8
"""Smallest image side a model takes (scikit-learn's 8×8 digits)."""
GRID_SIDE = 8
"""The conv stack halves the side until it is at most this (28 -> 14 -> 7, 48 -> 24 -> 12 -> 6)."""
MAX_WIDTH_FACTOR = 4
"""Conv layer i has width · 2^i channels, at most width · this."""


REFERENCE_SIDE = 28
"""The side the default widths are made for (MNIST's); a larger image gets narrower layers."""


def scaled_width(width: int, side: int) -> int:
    """``width`` scaled by REFERENCE_SIDE / ``side`` to a multiple of 8, at least 8 and at most
    ``width``: a conv's cost grows with the side squared, so 32 becomes 16 at 48x48 (the critics'
    always; the backbone's with ``TrainConfig.scale_width``; measured in docs/EXPERIMENTS.md)."""
    return min(width, max(8, 8 * round(width * REFERENCE_SIDE / side / 8)))


def conv_sides(side: int) -> list[int]:
    """Sides of the encoder's feature maps, the image's first: one stride-2 conv (4×4, padding 1:
    side // 2) per halving until the side is at most GRID_SIDE, at least one."""
    sides = [side]
    while len(sides) == 1 or sides[-1] > GRID_SIDE:
        sides.append(sides[-1] // 2)
    return sides


def conv_widths(cfg: ModelConfig) -> list[int]:
    """Channels of each feature map of ``conv_sides``, the image's (C) first."""
    n = len(conv_sides(cfg.image_size)) - 1
    return [cfg.channels] + [cfg.width * min(2**i, MAX_WIDTH_FACTOR) for i in range(n)]


class Encoder(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, d) raw code, or (N, 2d) for (mu, logvar)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sides, widths = conv_sides(cfg.image_size), conv_widths(cfg)
        out = cfg.latent_dim * (2 if cfg.variational else 1)
        if cfg.ordinal_head:
            out = cfg.num_labels + cfg.latent_dim - 2  # K order logits, then d - 2 style axes
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]  # (N, c_out, side // 2, ...)
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(widths[-1] * sides[-1] ** 2, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(N, d) latent -> (N, C, H, W) logits (apply sigmoid for images in [0, 1])."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sides, widths = conv_sides(cfg.image_size), conv_widths(cfg)
        extra = cfg.num_labels if sector_decoding(cfg) else 0  # soft one-hot of the order sector
        layers: list[nn.Module] = []
        for i in reversed(range(len(widths) - 1)):  # mirror of the encoder; odd sides get an output padding
            pad = sides[i] - 2 * sides[i + 1]
            layers += [nn.ConvTranspose2d(widths[i + 1], widths[i], 4, stride=2, padding=1, output_padding=pad), nn.ReLU()]
        self.net = nn.Sequential(
            nn.Linear(cfg.latent_dim + extra, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, widths[-1] * sides[-1] ** 2),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], sides[-1], sides[-1])),
            *layers[:-1],  # (N, C, H, W) logits: no activation after the last
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SemanticAutoencoder(nn.Module):
    """The model every family trains and every checkpoint loads.

    ``encode(x)`` -> (N, d) unit vectors ẑ (the public latent);
    ``decode(z)`` -> (N, C, H, W) images in [0, 1].
    ``code(x)`` is the latent the decoder consumes: ẑ for spherical models,
    the raw mean code for Euclidean baselines (where lerp happens).
    """

    meta: dict[str, Any]
    """model.json of the checkpoint it was loaded from (empty for a fresh model)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.meta = {}
        if cfg.image_size < MIN_SIDE:
            raise InputError(f"image_size must be at least {MIN_SIDE}, got {cfg.image_size}")
        if cfg.channels not in (1, 3):
            raise InputError(f"channels must be 1 (grey) or 3 (colour), got {cfg.channels}")
        if cfg.ordinal_head and (cfg.num_labels < 2 or cfg.variational or cfg.latent_dim < 3):
            raise InputError("ordinal_head needs num_labels >= 2, latent_dim >= 3 and a non-variational model")
        if cfg.label_reader and cfg.num_labels < 2:
            raise InputError("label_reader needs num_labels >= 2")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.reader = LabelReader(cfg.channels, cfg.num_labels, cfg.reader_width) if cfg.label_reader else None

    def _check_images(self, x: torch.Tensor) -> None:
        c, s = self.cfg.channels, self.cfg.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise InputError(f"expected images of shape (N, {c}, {s}, {s}), got {tuple(x.shape)}")

    def order_logits_and_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For an ordinal-head model: (N, K) order logits and the (N, d) raw code

        u = (cos ψ, sin ψ, s) with ψ = Σ_k softmax(logits)_k φ_k, the expected sector
        centre, and s the d - 2 style outputs (with ``style_angle`` = r > 0:
        u = (cos r cos ψ, cos r sin ψ, sin r ŝ)). A K-way head places classes on the
        order circle directly; learning a 1-D order angle from scratch instead
        stalls, as clusters cannot pass one another on a line."""
        self._check_images(x)
        h = self.encoder(x)
        k = self.cfg.num_labels
        logits, style = h[:, :k], h[:, k:]
        centres = sector_centres(k, self.cfg.circle_span, x.device).to(h.dtype)
        if self.cfg.snap_order_at_eval and not self.training:
            psi = centres[logits.argmax(dim=1)]  # (N,)
        else:
            psi = torch.softmax(logits / self.cfg.order_temperature, dim=1) @ centres  # (N,)
        plane = torch.stack([torch.cos(psi), torch.sin(psi)], dim=1)  # (N, 2)
        if self.cfg.style_angle > 0:
            plane, style = at_lean(plane, style, self.cfg.style_angle)  # unit by construction
        return logits, torch.cat([plane, style], dim=1)

    @property
    def has_order_circle(self) -> bool:
        """Whether the model can say which label an image shows: it has an order circle (atnl)."""
        return self.cfg.spherical and self.cfg.num_labels >= 2

    def label_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, K) the model's reading of each image's label: the order
        head's softmax, or (without a head) a one-hot of the sector nearest the order angle;
        with a label reader, each label's probability is the lower of the head's and the
        reader's, so an image is read as y with confidence only when both are sure of y.
        Only for models with an order circle (``has_order_circle``)."""
        if not self.has_order_circle:
            raise InputError("this model has no order circle to read labels from (family atnl has one)")
        if self.cfg.ordinal_head:
            probs = torch.softmax(self.order_logits_and_code(x)[0], dim=1)  # (N, K)
        else:
            centres = sector_centres(self.cfg.num_labels, self.cfg.circle_span, x.device)
            psi = order_angle(self.encode(x))  # (N,)
            nearest = (psi[:, None] - centres[None, :]).abs().argmin(1)
            probs = F.one_hot(nearest, self.cfg.num_labels).to(x.dtype)
        return probs if self.reader is None else torch.minimum(probs, self.reader.probs(x))

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) for variational models, (code, None) otherwise; (N, d) each."""
        if self.cfg.ordinal_head:
            return self.order_logits_and_code(x)[1], None
        self._check_images(x)
        h = self.encoder(x)
        if self.cfg.variational:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar
        return h, None

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) latent as the decoder consumes it (deterministic: the mean)."""
        mu, _ = self.encode_stats(x)
        return normalize(mu) if self.cfg.spherical else mu

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, d) unit vectors."""
        mu, _ = self.encode_stats(x)
        return normalize(mu)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.cfg.latent_dim:
            raise InputError(f"expected latents of shape (N, {self.cfg.latent_dim}), got {tuple(z.shape)}")
        if sector_decoding(self.cfg):
            z = torch.cat(snap_order_angle(z, self.cfg), dim=1)
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) latents -> (N, C, H, W) images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))
