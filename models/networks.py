"""Encoder/decoder backbone shared by every family (atnl, ae, vae, ...).

Imports only torch. The architecture is fixed by ``ModelConfig``, which is
saved in the checkpoint so that loading needs nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.geometry import normalize


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 16
    """Size d of the latent; ATNL latents live on S^{d-1}."""
    channels: int = 1
    """Image channels C (1 for grey digits)."""
    image_size: int = 28
    """Height = width of the images, a multiple of 4."""
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
    circle_span: float = 0.9 * math.pi
    """Radians of the order circle (latent axes 0 and 1) the K label sectors cover."""
    sector_decoder: bool = False
    """Decoder reads the order angle snapped to its nearest sector centre, and that
    sector as a one-hot (see ``snap_order_angle``)."""
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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Encoder(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, d) raw code, or (N, 2d) for (mu, logvar)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, s = cfg.width, cfg.image_size // 4
        out = cfg.latent_dim * (2 if cfg.variational else 1)
        if cfg.ordinal_head:
            out = cfg.num_labels + cfg.latent_dim - 2  # K order logits, then d - 2 style axes
        self.net = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 4, stride=2, padding=1),  # (N, w, H/2, W/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # (N, 2w, H/4, W/4)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * w * s * s, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(N, d) latent -> (N, C, H, W) logits (apply sigmoid for images in [0, 1])."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, s = cfg.width, cfg.image_size // 4
        extra = cfg.num_labels if sector_decoding(cfg) else 0  # soft one-hot of the order sector
        self.net = nn.Sequential(
            nn.Linear(cfg.latent_dim + extra, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, 2 * w * s * s),
            nn.ReLU(),
            nn.Unflatten(1, (2 * w, s, s)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # (N, w, H/2, W/2)
            nn.ReLU(),
            nn.ConvTranspose2d(w, cfg.channels, 4, stride=2, padding=1),  # (N, C, H, W)
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
        if cfg.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {cfg.image_size}")
        if cfg.ordinal_head and (cfg.num_labels < 2 or cfg.variational or cfg.latent_dim < 3):
            raise ValueError("ordinal_head needs num_labels >= 2, latent_dim >= 3 and a non-variational model")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def _check_images(self, x: torch.Tensor) -> None:
        c, s = self.cfg.channels, self.cfg.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (N, {c}, {s}, {s}), got {tuple(x.shape)}")

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
            lean = torch.tensor(self.cfg.style_angle, dtype=h.dtype)
            plane, style = plane * torch.cos(lean), normalize(style) * torch.sin(lean)  # unit by construction
        return logits, torch.cat([plane, style], dim=1)

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
            raise ValueError(f"expected latents of shape (N, {self.cfg.latent_dim}), got {tuple(z.shape)}")
        if sector_decoding(self.cfg):
            z = torch.cat(snap_order_angle(z, self.cfg), dim=1)
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) latents -> (N, C, H, W) images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))


def sector_centres(num_labels: int, span: float, device: torch.device | None = None) -> torch.Tensor:
    """(K,) centres φ_k = (k - (K-1)/2) · span/K of the label sectors on the order circle, radians."""
    k = torch.arange(num_labels, dtype=torch.float32, device=device)
    return (k - (num_labels - 1) / 2) * (span / num_labels)


def sector_decoding(cfg: ModelConfig) -> bool:
    return cfg.sector_decoder and cfg.num_labels >= 2


def snap_order_angle(z: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input: z with its order angle ψ = atan2(z_1, z_0) snapped to the
    nearest sector centre φ_k, (N, d), and that sector as a one-hot, (N, K).

    A point on a path between two labels then decodes as one label or the
    other, never as a blend (a 6-7 blend reads as a 2; a soft staircase scored
    lower than this hard one). The one-hot gives the decoder the label as K
    inputs: two of d coordinates were too weak a signal, and the decoder read
    the digit from the style axes instead. With a fixed lean (``style_angle``)
    the plane and the style direction are put back at that lean (a slerp's
    middle leans less than its ends); otherwise both pass through."""
    centres = sector_centres(cfg.num_labels, cfg.circle_span, z.device).to(z.dtype)  # (K,)
    psi = torch.atan2(z[:, 1], z[:, 0])  # (N,)
    k = (psi[:, None] - centres[None, :]).abs().argmin(1)  # (N,)
    rho, style = z[:, :2].norm(dim=1), z[:, 2:]
    if cfg.unit_style_input:
        rho, style = torch.ones_like(rho), normalize(style)
    elif cfg.style_angle > 0:  # back onto the training lean: a slerp's middle leans less than its ends
        lean = torch.tensor(cfg.style_angle, dtype=z.dtype)
        rho, style = torch.cos(lean).expand_as(rho), normalize(style) * torch.sin(lean)
    plane = torch.stack([rho * torch.cos(centres[k]), rho * torch.sin(centres[k])], 1)  # (N, 2)
    return torch.cat([plane, style], dim=1), F.one_hot(k, cfg.num_labels).to(z.dtype)
