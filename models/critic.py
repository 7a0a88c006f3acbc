"""Image critics: small conv nets trained beside an autoencoder, never saved with it.

``ConvCritic`` is the network (the encoder's conv stack with a 1-channel head,
one score per 4×4 patch); ACAI regresses a mixing coefficient with it and
ATNL's realism term (``RealismCritic``) tells real images from decoded ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks import SemanticAutoencoder, scaled_width

CRITIC_WIDTH = 32
"""Channels of a critic's first conv layer (the encoder's width)."""
CRITIC_LR = 1e-3
"""Adam learning rate of a critic (the autoencoder's default)."""


def adversary_steps(model: SemanticAutoencoder) -> bool:
    """Only a training forward with gradients steps a critic or discriminator (not eval or no_grad)."""
    return model.training and torch.is_grad_enabled()


class ConvCritic(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, outputs, H/4, W/4) patch scores."""

    def __init__(self, channels: int, width: int = CRITIC_WIDTH, outputs: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (N, w, H/2, W/2)
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (N, 2w, H/4, W/4)
            nn.Conv2d(2 * width, outputs, 3, padding=1),  # (N, outputs, H/4, W/4)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RealismCritic:
    """A class-conditional patch critic that learns to tell real images of label k from
    decoded images drawn for label k (one output channel a label, non-saturating GAN
    losses), and the decoder's loss for fooling it. Conditional, it also punishes a
    decoded 2 that looks like a real 3, which an unconditional critic accepts. Built
    lazily on the first batch's device, as the objective exists before the training
    loop picks one."""

    def __init__(self, num_labels: int, lr: float = CRITIC_LR) -> None:
        self.num_labels, self.lr = num_labels, lr
        self.net: ConvCritic | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _scores(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, H/4, W/4) patch logits of ``images`` (N, C, H, W) in the channel of ``labels`` (N,)."""
        if self.net is None:
            width = scaled_width(CRITIC_WIDTH, images.shape[-1])
            self.net = ConvCritic(images.shape[1], width, outputs=self.num_labels).to(images.device)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=(0.5, 0.999))
        return self.net(images)[torch.arange(len(images), device=images.device), labels]

    def step(self, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor) -> float:
        """One critic step on real images (N, C, H, W) in [0, 1] with labels (N,) against
        decoded ``fake`` (M, C, H, W) drawn for ``fake_labels`` (M,)."""
        r, f = self._scores(real, real_labels), self._scores(fake.detach(), fake_labels)
        loss = F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + F.binary_cross_entropy_with_logits(
            f, torch.zeros_like(f)
        )
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def fooling_loss(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar: the decoder's loss, BCE(critic(fake | label), real) averaged over patches."""
        f = self._scores(fake, labels)
        return F.binary_cross_entropy_with_logits(f, torch.ones_like(f))

    def describe(self) -> str:
        net = f"ConvCritic {CRITIC_WIDTH}-{2 * CRITIC_WIDTH}-K patch logits (narrower above 28 px), the label's channel"
        return f"{net}, non-saturating BCE, Adam lr {self.lr}, betas (0.5, 0.999)"
