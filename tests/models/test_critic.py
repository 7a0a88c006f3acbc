"""RealismCritic: the class-conditional patch critic beside ATNL's decoder."""

from __future__ import annotations

import torch

from models.critic import ConvCritic, RealismCritic


def test_conv_critic_gives_one_score_a_patch_and_output() -> None:
    assert ConvCritic(1, outputs=10)(torch.rand(3, 1, 28, 28)).shape == (3, 10, 7, 7)


def test_the_critic_learns_to_tell_real_from_fake_of_each_label() -> None:
    torch.manual_seed(0)
    critic = RealismCritic(num_labels=2)
    labels = torch.tensor([0, 1] * 8)
    real = torch.zeros(16, 1, 28, 28)
    real[labels == 0, :, 10:18, 13:15] = 1.0  # a "1": a vertical bar
    real[labels == 1, :, 13:15, 10:18] = 1.0  # a horizontal bar
    fake = real.flip(0)  # label 0 now shows label 1's bar and the other way round
    first = critic.step(real, labels, fake, labels)
    for _ in range(60):
        last = critic.step(real, labels, fake, labels)
    assert last < 0.5 * first
    # Conditional: the same image scores as real under its own label and as fake under the other.
    assert critic.fooling_loss(real[:2], labels[:2]) < critic.fooling_loss(real[:2], labels[:2].flip(0))


def test_fooling_loss_teaches_the_images_not_the_critic() -> None:
    torch.manual_seed(0)
    critic = RealismCritic(num_labels=3)
    images = torch.rand(4, 1, 28, 28, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    critic.step(images.detach(), labels, images.detach(), labels)
    assert critic.net is not None
    before = [p.clone() for p in critic.net.parameters()]
    critic.fooling_loss(images, labels).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, critic.net.parameters(), strict=True))
