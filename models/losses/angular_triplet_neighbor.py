"""The Angular Triplet-Neighbor Loss (ATNL): our reading of the paper's poster.

For unit latents ẑ and ordinal labels y, with semantic distance
s(i, j) = |y_i - y_j| and angular distance θ(i, j) = arccos(ẑ_i · ẑ_j):

    L_ATNL = mean over valid triplets (a, p, n) of
             max(0, θ(a, p) - θ(a, n) + m · g(s(a, n) - s(a, p)))

A triplet is valid when a, p, n are distinct batch items, p is a semantic
neighbour of a (s(a, p) <= max_positive_gap) and n is semantically farther
(s(a, p) < s(a, n)). The margin schedule g is ``gap`` (g(Δ) = Δ: the angle must
grow with the label gap, so the order becomes a geodesic) or ``constant``
(g = 1). Mining is ``all`` valid in-batch triplets or ``semihard`` (only those
with θ(a, p) < θ(a, n) < θ(a, p) + margin).
"""

from __future__ import annotations

import torch
from torch import nn

from models.arccos import safe_arccos
from models.errors import InputError

MARGIN_SCHEDULES = ("gap", "constant")
MINING = ("all", "semihard")


class AngularTripletNeighborLoss(nn.Module):
    def __init__(
        self,
        margin: float = 0.3,
        margin_schedule: str = "gap",
        mining: str = "all",
        max_positive_gap: int | None = None,
    ) -> None:
        super().__init__()
        if margin < 0:
            raise InputError(f"margin must be >= 0 radians, got {margin}")
        if margin_schedule not in MARGIN_SCHEDULES:
            raise InputError(f"margin_schedule must be one of {MARGIN_SCHEDULES}, got {margin_schedule!r}")
        if mining not in MINING:
            raise InputError(f"mining must be one of {MINING}, got {mining!r}")
        self.margin = margin
        self.margin_schedule = margin_schedule
        self.mining = mining
        self.max_positive_gap = max_positive_gap

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``z``: (B, d) unit latents; ``labels``: (B,) ordinal integers. Returns a scalar."""
        if z.dim() != 2 or labels.shape != (z.shape[0],):
            raise InputError(f"expected z (B, d) and labels (B,), got {tuple(z.shape)} and {tuple(labels.shape)}")
        per_triplet, valid = self.triplet_losses(z, labels)
        if not valid.any():
            return z.sum() * 0.0  # keeps the graph; a batch of one label has no triplet
        return per_triplet[valid].mean()

    def triplet_losses(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-triplet losses and the validity mask, both (B, B, B) indexed [a, p, n]."""
        theta = safe_arccos(z @ z.T)  # (B, B)
        y = labels.to(z.dtype)
        s = (y[:, None] - y[None, :]).abs()  # (B, B) semantic distance
        gap = s[:, None, :] - s[:, :, None]  # (B, B, B): s(a, n) - s(a, p)
        g = gap if self.margin_schedule == "gap" else torch.ones_like(gap)
        margin = self.margin * g
        loss = torch.relu(theta[:, :, None] - theta[:, None, :] + margin)  # (B, B, B)

        b = z.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=z.device)
        # gap > 0 already rules out n = a (s(a, a) = 0 <= s(a, p)) and n = p (gap 0): only p = a is left.
        valid = (gap > 0) & ~eye[:, :, None]
        if self.max_positive_gap is not None:
            valid &= (s <= self.max_positive_gap)[:, :, None]
        if self.mining == "semihard":
            d_ap, d_an = theta[:, :, None], theta[:, None, :]
            valid &= (d_an > d_ap) & (d_an < d_ap + margin)
        return loss, valid

    def describe(self) -> dict[str, object]:
        """The exact form and parameters, for checkpoint metadata."""
        return {
            "name": "AngularTripletNeighborLoss",
            "formula": "mean_valid max(0, theta(a,p) - theta(a,n) + m * g(s(a,n) - s(a,p)))",
            "margin_radians": self.margin,
            "margin_schedule": self.margin_schedule,
            "mining": self.mining,
            "max_positive_gap": self.max_positive_gap,
        }
