"""Training objectives of the atnl, ae and vae families, on the shared backbone.

- ``ATNLObjective``: spherical latent; BCE reconstruction + λ_t·ATNL + λ_c·ordinal circle
  + λ_s·style invariance + label-free style + λ_k·restyled label consistency + realism
  against a critic.
- ``AutoencoderObjective``: Euclidean latent; reconstruction only (the paper's AE).
- ``VAEObjective``: Euclidean latent; reconstruction + β·KL to N(0, I), plus (vae-tl) a
  Euclidean triplet loss on the means (same label = positive).

The adversarial baselines' objectives are in ``models.adversarial``; which family
trains with which is ``models.families.FAMILIES``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.critic import RealismCritic, adversary_steps
from models.geometry import normalize
from models.losses import (
    AngularTripletNeighborLoss,
    LabelFreeStyleLoss,
    OrdinalCircleLoss,
    euclidean_triplet_loss,
    reconstruction_loss,
    restyled_label_consistency,
    style_class_share,
)
from models.networks import SemanticAutoencoder
from models.order_circle import restyled_latents


class Objective(nn.Module):
    """Loss of one family: ``forward(model, x, y) -> (total, parts)``."""

    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}


class ATNLObjective(Objective):
    def __init__(
        self,
        atnl: AngularTripletNeighborLoss,
        circle: OrdinalCircleLoss,
        triplet_weight: float,
        circle_weight: float,
        style_weight: float = 0.0,
        consistency_weight: float = 0.0,
        reconstruction_weight: float = 1.0,
        label_free_weight: float = 0.0,
        triplet_on_order: bool = False,
        realism_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.atnl, self.circle, self.label_free = atnl, circle, LabelFreeStyleLoss()
        self.realism_weight, self.critic = realism_weight, RealismCritic(circle.num_labels)
        self.triplet_weight, self.circle_weight, self.style_weight = triplet_weight, circle_weight, style_weight
        self.consistency_weight = consistency_weight
        self.reconstruction_weight, self.label_free_weight = reconstruction_weight, label_free_weight
        self.triplet_on_order = triplet_on_order

    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = None
        if model.cfg.ordinal_head:
            logits, u = model.order_logits_and_code(x)
            z = normalize(u)  # (B, d) unit
        else:
            z = model.code(x)  # (B, d) unit
        zero = z.sum() * 0.0
        rec = reconstruction_loss(model.decode_logits(z), x)
        tri = self.atnl(normalize(z[:, :2]) if self.triplet_on_order else z, y) if self.triplet_weight > 0 else zero
        circ = self.circle(z, y, logits) if self.circle_weight > 0 else zero
        inv = style_class_share(z[:, 2:], y) if self.style_weight > 0 else zero
        free = self.label_free(z[:, 2:], y) if self.label_free_weight > 0 else zero
        con = real = zero
        parts: dict[str, float] = {}
        if (self.consistency_weight > 0 or self.realism_weight > 0) and model.cfg.ordinal_head:
            mixed = restyled_latents(z.detach())  # the decoder alone learns to draw any style in any sector
            images = torch.sigmoid(model.decode_logits(mixed))
            if self.consistency_weight > 0:
                con = restyled_label_consistency(model, images, y)
            if self.realism_weight > 0:
                if adversary_steps(model):
                    parts["critic"] = self.critic.step(x, y, images, y)
                real = self.critic.fooling_loss(images, y)
        total = self.reconstruction_weight * rec + self.triplet_weight * tri + self.circle_weight * circ
        total = total + self.style_weight * inv + self.label_free_weight * free + self.consistency_weight * con
        total = total + self.realism_weight * real
        parts.update(rec=rec.item(), atnl=tri.item(), circle=circ.item(), style_class=inv.item(), realism=real.item())
        return total, {**parts, "label_free": free.item(), "consistency": con.item()}

    def describe(self) -> dict[str, Any]:
        return {
            "objective": "reconstruction_weight * BCE(D(z), x) + triplet_weight * ATNL(z or its order plane, y)"
            " + circle_weight * circle(z, y) + style_weight * style_class_share(z[:, 2:], y)"
            " + label_free_weight * label_free_style(z[:, 2:], y)"
            " + consistency_weight * CE(head(D(order of z, style of a shuffled z)), y)"
            " + realism_weight * BCE(critic(D(order of z, style of a shuffled z) | y), real)",
            "realism_weight": self.realism_weight,
            "critic": self.critic.describe(),
            "reconstruction_weight": self.reconstruction_weight,
            "triplet_weight": self.triplet_weight,
            "triplet_on": "order plane" if self.triplet_on_order else "latent",
            "label_free_weight": self.label_free_weight,
            "label_free": self.label_free.describe(),
            "circle_weight": self.circle_weight,
            "style_weight": self.style_weight,
            "consistency_weight": self.consistency_weight,
            "atnl": self.atnl.describe(),
            "circle": self.circle.describe(),
        }


class AutoencoderObjective(Objective):
    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        rec = reconstruction_loss(model.decode_logits(model.code(x)), x)
        return rec, {"rec": rec.item()}

    def describe(self) -> dict[str, Any]:
        return {"objective": "BCE(D(E(x)), x)"}


class VAEObjective(Objective):
    def __init__(self, beta: float, triplet_weight: float = 0.0, triplet_margin: float = 1.0) -> None:
        super().__init__()
        self.beta, self.triplet_weight, self.triplet_margin = beta, triplet_weight, triplet_margin

    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mu, logvar = model.encode_stats(x)
        assert logvar is not None, "VAE objective on a non-variational model"
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = reconstruction_loss(model.decode_logits(z), x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean() / x[0].numel()
        total = rec + self.beta * kl
        parts = {"rec": rec.item(), "kl": kl.item()}
        if self.triplet_weight > 0:
            tri = euclidean_triplet_loss(mu, y, self.triplet_margin)
            total = total + self.triplet_weight * tri
            parts["triplet"] = tri.item()
        return total, parts

    def describe(self) -> dict[str, Any]:
        return {
            "objective": "BCE + beta * KL/pixels + triplet_weight * euclidean_triplet(mu, y)",
            "beta": self.beta,
            "triplet_weight": self.triplet_weight,
            "triplet_margin": self.triplet_margin,
        }
