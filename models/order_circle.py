"""The order circle: where an atnl latent keeps its label and where its style.

Latent axes 0 and 1 span the order plane. Label k's sector is centred on the
great circle in that plane at

    φ_k = (k - (K - 1) / 2) · span / K

so the K sectors together cover ``span`` < π radians (slerp then never takes
the long way round). A latent's order angle is ψ = atan2(z_1, z_0); the other
d - 2 axes carry its style, and the angle it leans off the circle towards them
is its lean.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from models.geometry import normalize

CIRCLE_SPAN = 0.9 * math.pi
"""Radians of the order circle the K label sectors cover together (< π)."""
STYLE_RADIUS = 0.6
"""Radians a latent leans off the order circle to carry style: the bound of the ordinal
circle loss and, with a fixed lean, the lean of every latent of an ordinal-head model."""


class SectorLayout(Protocol):
    """What the sector decoder reads of a model's config (``networks.ModelConfig``)."""

    @property
    def num_labels(self) -> int: ...
    @property
    def circle_span(self) -> float: ...
    @property
    def sector_decoder(self) -> bool: ...
    @property
    def unit_style_input(self) -> bool: ...
    @property
    def style_angle(self) -> float: ...


def sector_centres(num_labels: int, span: float, device: torch.device | None = None) -> torch.Tensor:
    """(K,) centres φ_k = (k - (K-1)/2) · span/K of the label sectors on the order circle, radians."""
    k = torch.arange(num_labels, dtype=torch.float32, device=device)
    return (k - (num_labels - 1) / 2) * (span / num_labels)


def order_angle(z: torch.Tensor) -> torch.Tensor:
    """(N,) order angle ψ = atan2(z_1, z_0) of latents (N, d), radians in (-π, π]."""
    return torch.atan2(z[:, 1], z[:, 0])


def at_lean(plane: torch.Tensor, style: torch.Tensor, lean: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The order plane (N, 2) scaled by cos r and the style direction of ``style`` (N, d - 2)
    by sin r, for r = ``lean`` radians: with a unit ``plane``, the parts of a unit latent
    that leans r off the order circle."""
    r = torch.tensor(lean, dtype=plane.dtype)
    return plane * torch.cos(r), normalize(style) * torch.sin(r)


def sector_decoding(cfg: SectorLayout) -> bool:
    """Whether the decoder of ``cfg`` reads the snapped order sector (``snap_order_angle``)."""
    return cfg.sector_decoder and cfg.num_labels >= 2


def snap_order_angle(z: torch.Tensor, cfg: SectorLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input: z with its order angle ψ snapped to the nearest sector centre
    φ_k, (N, d), and that sector as a one-hot, (N, K).

    A point on a path between two labels then decodes as one label or the
    other, never as a blend (a 6-7 blend reads as a 2; a soft staircase scored
    lower than this hard one). The one-hot gives the decoder the label as K
    inputs: two of d coordinates were too weak a signal, and the decoder read
    the digit from the style axes instead. With a fixed lean (``style_angle``)
    the plane and the style direction are put back at that lean (a slerp's
    middle leans less than its ends); otherwise both pass through."""
    centres = sector_centres(cfg.num_labels, cfg.circle_span, z.device).to(z.dtype)  # (K,)
    k = (order_angle(z)[:, None] - centres[None, :]).abs().argmin(1)  # (N,)
    snapped = torch.stack([torch.cos(centres[k]), torch.sin(centres[k])], 1)  # (N, 2) unit
    style = z[:, 2:]
    if cfg.unit_style_input:
        plane, style = snapped, normalize(style)
    elif cfg.style_angle > 0:  # back onto the training lean: a slerp's middle leans less than its ends
        plane, style = at_lean(snapped, style, cfg.style_angle)
    else:
        plane = z[:, :2].norm(dim=1, keepdim=True) * snapped
    return torch.cat([plane, style], dim=1), F.one_hot(k, cfg.num_labels).to(z.dtype)


def place_in_sectors(z: torch.Tensor, labels: torch.Tensor, num_labels: int, span: float) -> torch.Tensor:
    """(N, d) latents ``z`` with each one's order angle turned to the centre φ_y of its label
    y (``labels``, (N,) in [0, K)); its distance from the order plane's origin and its style
    (axes 2..d-1) kept, so a unit latent stays unit. Hallucination starts from the labels it
    is given this way, not from where the encoder happened to put an example."""
    centres = sector_centres(num_labels, span, z.device).to(z.dtype)[labels]  # (N,)
    radius = z[:, :2].norm(dim=1, keepdim=True)  # (N, 1)
    plane = torch.stack([torch.cos(centres), torch.sin(centres)], 1) * radius  # (N, 2)
    return torch.cat([plane, z[:, 2:]], dim=1)


def restyled_latents(z: torch.Tensor) -> torch.Tensor:
    """(B, d) unit latents: the order part (axes 0, 1) of each of ``z``'s (B, d) unit latents of an
    ordinal-head model, with the style of another item of the batch (a random shuffle), as a
    path's middle and a restyled hallucination pair them."""
    shuffled = torch.randperm(len(z), device=z.device)
    return normalize(torch.cat([z[:, :2], z[shuffled, 2:]], dim=1))  # already unit with a fixed lean
