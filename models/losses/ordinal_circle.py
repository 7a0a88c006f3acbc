"""Ordinal circle loss: lays the label order along one great circle.

The triplet loss alone orders labels but leaves the arrangement free; slerp
between two latents then passes through the labels in between only if the
classes sit in order along the great circle joining them. This loss fixes that
circle: the order plane of ``models.order_circle``, with label k's sector
centred at φ_k and Δ = span / K the width of a sector. For a unit latent ẑ,
ψ is its order angle and ρ = ||(ẑ_0, ẑ_1)|| its closeness to the circle. Per
item with label y:

    CE(softmax_k(-(ψ - φ_k)^2 / (2 τ^2)), y)  +  relu(arccos(ρ) - r)^2,   τ = Δ · tau_fraction

The first term is a cross-entropy over sectors: unlike a squared pull towards
φ_y it pushes hardest on items in the wrong sector, which is what keeps the
sectors clean (a squared pull left a third of the items outside their sector).
``r`` is the angle left to style: the remaining d - 2 axes may carry up to r
radians of the latent. With ``label_smoothing`` ε the cross-entropy's target is
(1 - ε) · one-hot(y) + ε / K rather than the one-hot (off by default, see
TrainConfig.label_smoothing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.arccos import safe_arccos
from models.errors import InputError
from models.order_circle import CIRCLE_SPAN, STYLE_RADIUS, order_angle, sector_centres


class OrdinalCircleLoss(nn.Module):
    def __init__(
        self,
        num_labels: int,
        span: float = CIRCLE_SPAN,
        style_radius: float = STYLE_RADIUS,
        tau_fraction: float = 1 / 3,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_labels < 2:
            raise InputError(f"num_labels must be >= 2, got {num_labels}")
        if not 0 < span < math.pi:
            raise InputError(f"span must be in (0, π) radians, got {span}")
        if tau_fraction <= 0:
            raise InputError(f"tau_fraction must be > 0, got {tau_fraction}")
        if not 0 <= label_smoothing < 1:
            raise InputError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_labels = num_labels
        self.span = span
        self.style_radius = style_radius
        self.tau_fraction = tau_fraction
        self.label_smoothing = label_smoothing
        self.sector = span / num_labels

    def centres(self, device: torch.device | None = None) -> torch.Tensor:
        """(K,) sector centres φ_k in radians."""
        return sector_centres(self.num_labels, self.span, device)

    def sector_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K) logits -(ψ - φ_k)^2 / (2 τ^2) of unit latents z (B, d)."""
        psi = order_angle(z)  # (B,)
        tau = self.sector * self.tau_fraction
        return -((psi[:, None] - self.centres(z.device)[None, :].to(z.dtype)) ** 2) / (2 * tau**2)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, order_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``z``: (B, d) unit latents, d >= 3; ``labels``: (B,) in [0, K). Returns a scalar.

        ``order_logits`` (B, K): an encoder head's sector logits, used instead of
        the ones derived from ψ (the head then sets ψ, see SemanticAutoencoder.order_logits_and_code)."""
        if z.dim() != 2 or z.shape[1] < 3 or labels.shape != (z.shape[0],):
            raise InputError(f"expected z (B, d>=3) and labels (B,), got {tuple(z.shape)} and {tuple(labels.shape)}")
        logits = self.sector_logits(z) if order_logits is None else order_logits
        order = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        rho = z[:, :2].norm(dim=1)  # (B,)
        style = (torch.relu(safe_arccos(rho) - self.style_radius) ** 2).mean()
        return order + style

    def describe(self) -> dict[str, object]:
        return {
            "name": "OrdinalCircleLoss",
            "formula": "CE(softmax_k(-(psi - phi_k)^2 / (2 tau^2)), y) + mean(relu(arccos(rho) - r)^2)",
            "span_radians": self.span,
            "style_radius_radians": self.style_radius,
            "tau_fraction": self.tau_fraction,
            "label_smoothing": self.label_smoothing,
        }
