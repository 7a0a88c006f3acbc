"""Ordinal circle loss: lays the label order along one great circle.

The triplet loss alone orders labels but leaves the arrangement free; slerp
between two latents then passes through the labels in between only if the
classes sit in order along the great circle joining them. This loss fixes that
circle: the plane of the first two latent axes, with label k's sector centred at

    φ_k = (k - (K - 1) / 2) · Δ,   Δ = span / K

so all K sectors together cover ``span`` < π radians (slerp then never takes
the long way round). For a unit latent ẑ with projection (ẑ_1, ẑ_2) onto the
plane, ψ = atan2(ẑ_2, ẑ_1) is its order angle and ρ = ||(ẑ_1, ẑ_2)|| its
closeness to the circle. Per item:

    (ψ - t)^2 / Δ^2  +  relu(arccos(ρ) - r)^2

``t`` is φ_y, or, with ``fill``, a target spread evenly across the sector by
the item's rank among its class in the batch (sectors touch, with no empty gap
for the decoder to blend across). ``r`` is the angle left to style: the
remaining d - 2 axes may carry up to r radians of the latent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.networks import sector_centres


class OrdinalCircleLoss(nn.Module):
    def __init__(self, num_labels: int, span: float = 0.9 * math.pi, style_radius: float = 0.6, fill: bool = True) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        if not 0 < span < math.pi:
            raise ValueError(f"span must be in (0, π) radians, got {span}")
        self.num_labels = num_labels
        self.span = span
        self.style_radius = style_radius
        self.fill = fill
        self.sector = span / num_labels

    def centres(self, device: torch.device | None = None) -> torch.Tensor:
        """(K,) sector centres φ_k in radians."""
        return sector_centres(self.num_labels, self.span, device)

    def targets(self, psi: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) target order angles for current angles ``psi`` (B,)."""
        t = self.centres(psi.device)[labels]
        if not self.fill:
            return t
        t = t.clone()
        for k in labels.unique():
            idx = (labels == k).nonzero().squeeze(1)
            order = psi[idx].detach().argsort()
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(idx), device=psi.device)
            t[idx] += ((rank.to(psi.dtype) + 0.5) / len(idx) - 0.5) * self.sector
        return t

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``z``: (B, d) unit latents, d >= 3; ``labels``: (B,) in [0, K). Returns a scalar."""
        if z.dim() != 2 or z.shape[1] < 3 or labels.shape != (z.shape[0],):
            raise ValueError(f"expected z (B, d>=3) and labels (B,), got {tuple(z.shape)} and {tuple(labels.shape)}")
        psi = torch.atan2(z[:, 1], z[:, 0])  # (B,)
        rho = z[:, :2].norm(dim=1).clamp(max=1 - 1e-6)  # (B,)
        order = ((psi - self.targets(psi, labels)) / self.sector) ** 2
        style = torch.relu(torch.arccos(rho) - self.style_radius) ** 2
        return (order + style).mean()

    def describe(self) -> dict[str, object]:
        return {
            "name": "OrdinalCircleLoss",
            "formula": "mean((psi - t)^2 / sector^2 + relu(arccos(rho) - r)^2)",
            "span_radians": self.span,
            "style_radius_radians": self.style_radius,
            "fill": self.fill,
        }
