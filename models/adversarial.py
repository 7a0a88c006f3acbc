"""Adversarial baselines of the benchmark: AAE and ACAI, as training objectives.

Each objective owns its discriminator (AAE) or critic (ACAI) and that network's
Adam optimizer, and takes one adversary step inside ``forward`` before it
returns the autoencoder's loss. The training loop in ``models.training`` then
steps the autoencoder as for any other family; nothing else changes. The
adversary is built lazily, on the device of the first batch, because the
objective is created before the loop knows the device. It is a training aid
only: it is not saved in the checkpoint (``describe`` records its recipe).

- ``aae`` (Makhzani et al. 2016): a discriminator tells the codes E(x) from
  samples of the prior N(0, I); the encoder is trained to fool it.
- ``acai`` (Berthelot et al. 2019): a critic regresses the mixing coefficient α
  of decoded interpolants x̂_α = D(α E(x1) + (1-α) E(x2)), α ~ U(0, ½); the
  autoencoder is trained to make it answer 0 on them (λ‖C(x̂_α)‖²), and the
  critic is regularised with ‖C(γ x + (1-γ) x̂)‖² on blends of data and
  reconstructions. λ = 0.5 and γ = 0.2 as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.critic import CRITIC_WIDTH, ConvCritic, adversary_steps
from models.losses import reconstruction_loss
from models.networks import SemanticAutoencoder, scaled_width
from models.objectives import Objective

ADVERSARY_LR = 1e-3
"""Adam learning rate of the discriminator / critic (the autoencoder's default)."""
AAE_WEIGHT = 0.005
"""Weight of the AAE encoder's fooling loss against the per-pixel BCE (~0.1 at convergence).
0.05 let the prior win: codes lost the image (reconstruction BCE 0.245, probe 69.5%)."""
AAE_HIDDEN = 256
"""Width of the two hidden layers of the AAE latent discriminator."""
ACAI_LAMBDA = 0.5
"""λ: weight of the autoencoder's ‖C(x̂_α)‖² term (paper value)."""
ACAI_GAMMA = 0.2
"""γ: blend of data and reconstruction in the critic's regulariser (paper value)."""


class AdversarialAutoencoderObjective(Objective):
    """BCE(D(E(x)), x) + weight · BCE(disc(E(x)), real): codes made to look like N(0, I)."""

    def __init__(self, weight: float = AAE_WEIGHT, lr: float = ADVERSARY_LR) -> None:
        super().__init__()
        self.weight, self.lr = weight, lr
        self.discriminator: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _build(self, latent_dim: int, device: torch.device) -> nn.Module:
        if self.discriminator is None:
            self.discriminator = nn.Sequential(
                nn.Linear(latent_dim, AAE_HIDDEN), nn.LeakyReLU(0.2),
                nn.Linear(AAE_HIDDEN, AAE_HIDDEN), nn.LeakyReLU(0.2),
                nn.Linear(AAE_HIDDEN, 1),
            ).to(device)  # fmt: skip
            self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        return self.discriminator

    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z = model.code(x)  # (B, d) Euclidean
        rec = reconstruction_loss(model.decode_logits(z), x)
        disc = self._build(z.shape[1], z.device)
        parts: dict[str, float] = {"rec": rec.item()}
        if adversary_steps(model):
            assert self.optimizer is not None
            prior = torch.randn_like(z)
            real, fake = disc(prior), disc(z.detach())  # (B, 1) logits each
            d_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
                fake, torch.zeros_like(fake)
            )
            self.optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimizer.step()
            parts["disc"] = d_loss.item()
        fooled = disc(z)
        adv = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        parts["adv"] = adv.item()
        return rec + self.weight * adv, parts

    def describe(self) -> dict[str, Any]:
        return {
            "objective": "BCE(D(E(x)), x) + weight * BCE(disc(E(x)), 1); disc separates E(x) from N(0, I)",
            "weight": self.weight,
            "discriminator": f"MLP d-{AAE_HIDDEN}-{AAE_HIDDEN}-1, LeakyReLU, Adam lr {self.lr}",
        }


class ACAIObjective(Objective):
    """BCE(D(E(x)), x) + λ · ‖C(x̂_α)‖²; the critic C learns ‖C(x̂_α) - α‖² + ‖C(γx + (1-γ)x̂)‖²."""

    def __init__(self, lam: float = ACAI_LAMBDA, gamma: float = ACAI_GAMMA, lr: float = ADVERSARY_LR) -> None:
        super().__init__()
        self.lam, self.gamma, self.lr = lam, gamma, lr
        self.critic: ConvCritic | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _build(self, channels: int, side: int, device: torch.device) -> ConvCritic:
        if self.critic is None:
            self.critic = ConvCritic(channels, scaled_width(CRITIC_WIDTH, side)).to(device)
            self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
        return self.critic

    def forward(self, model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z = model.code(x)  # (B, d)
        logits = model.decode_logits(z)
        rec = reconstruction_loss(logits, x)
        # Mix each code with another item's (a fixed shuffle of the batch), α ~ U(0, ½).
        alpha = torch.rand(len(z), 1, device=z.device) / 2  # (B, 1)
        partner = torch.roll(z, shifts=1, dims=0)
        mixed = model.decode(alpha * z + (1 - alpha) * partner)  # (B, C, H, W) in [0, 1]
        net = self._build(x.shape[1], x.shape[-1], x.device)

        def critic(images: torch.Tensor) -> torch.Tensor:  # (N,) α estimates: the patch scores mean-pooled
            return net(images).mean(dim=(1, 2, 3))

        parts: dict[str, float] = {"rec": rec.item()}
        if adversary_steps(model):
            assert self.optimizer is not None
            blend = self.gamma * x + (1 - self.gamma) * torch.sigmoid(logits.detach())
            c_loss = (critic(mixed.detach()) - alpha[:, 0]).pow(2).mean() + critic(blend).pow(2).mean()
            self.optimizer.zero_grad(set_to_none=True)
            c_loss.backward()
            self.optimizer.step()
            parts["critic"] = c_loss.item()
        fool = critic(mixed).pow(2).mean()
        parts["acai"] = fool.item()
        return rec + self.lam * fool, parts

    def describe(self) -> dict[str, Any]:
        return {
            "objective": "BCE(D(E(x)), x) + lam * C(D(a E(x1) + (1-a) E(x2)))^2, a ~ U(0, 1/2)",
            "lam": self.lam,
            "gamma": self.gamma,
            "critic": f"conv {CRITIC_WIDTH}-{2 * CRITIC_WIDTH}-1, mean-pooled, Adam lr {self.lr}",
            "critic_loss": "(C(x_a) - a)^2 + C(gamma x + (1 - gamma) x_rec)^2",
        }
