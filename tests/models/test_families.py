"""The family registry: each family's model config and objective, and the loss terms they add up."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from models.adversarial import ACAIObjective, AdversarialAutoencoderObjective
from models.data import ImageSet
from models.families import FAMILIES
from models.losses import euclidean_triplet_loss, reconstruction_loss, restyled_label_consistency, style_class_share
from models.networks import SemanticAutoencoder
from models.objectives import ATNLObjective, AutoencoderObjective, VAEObjective
from models.training import TrainConfig

OBJECTIVES = {
    "atnl": ATNLObjective,
    "ae": AutoencoderObjective,
    "vae": VAEObjective,
    "vae-tl": VAEObjective,
    "aae": AdversarialAutoencoderObjective,
    "acai": ACAIObjective,
}
"""The objective class each family trains with."""


def test_every_family_has_an_objective_class() -> None:
    assert set(FAMILIES) == set(OBJECTIVES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_builds_its_objective_from_the_registry(family: str) -> None:
    spec = FAMILIES[family]
    objective = spec.objective(TrainConfig(family=family), num_labels=10)
    assert type(objective) is OBJECTIVES[family]
    assert "objective" in objective.describe()


def test_the_objectives_take_their_options_from_the_config() -> None:
    cfg = TrainConfig(beta=0.5, triplet_weight=2.0, margin=0.2, circle_weight=1.5, label_smoothing=0.1)
    vae, vae_tl = FAMILIES["vae"].objective(cfg, 10), FAMILIES["vae-tl"].objective(cfg, 10)
    assert isinstance(vae, VAEObjective) and isinstance(vae_tl, VAEObjective)
    assert (vae.beta, vae.triplet_weight) == (0.5, 0.0)
    assert (vae_tl.beta, vae_tl.triplet_weight) == (0.5, 2.0)
    atnl = FAMILIES["atnl"].objective(cfg, 7).describe()
    assert (atnl["triplet_weight"], atnl["circle_weight"]) == (2.0, 1.5)
    assert atnl["atnl"]["margin_radians"] == 0.2
    assert (atnl["circle"]["span_radians"], atnl["circle"]["label_smoothing"]) == (cfg.circle_span, 0.1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_builds_its_model_config_from_the_registry(family: str, digits_100: ImageSet) -> None:
    spec, cfg = FAMILIES[family], TrainConfig(family=family, latent_dim=6)
    model_cfg = spec.model_config(cfg, digits_100)
    assert (model_cfg.latent_dim, model_cfg.channels, model_cfg.image_size) == (6, 1, 28)
    assert (model_cfg.spherical, model_cfg.variational) == (spec.spherical, spec.variational)
    order_circle = (model_cfg.num_labels, model_cfg.ordinal_head, model_cfg.sector_decoder, model_cfg.style_angle)
    if spec.ordered:
        assert order_circle == (10, True, True, cfg.style_radius)
    else:
        assert order_circle == (0, False, False, 0.0)


def test_the_order_circle_options_follow_the_config(digits_100: ImageSet) -> None:
    atnl = FAMILIES["atnl"]
    free_lean = atnl.model_config(TrainConfig(fixed_style_angle=False), digits_100)
    no_head = atnl.model_config(TrainConfig(ordinal_head=False), digits_100)
    assert free_lean.ordinal_head and free_lean.style_angle == 0.0
    assert not no_head.ordinal_head and not no_head.snap_order_at_eval and no_head.style_angle == 0.0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_objective_gives_a_finite_loss_on_a_tiny_batch(family: str, digits_100: ImageSet) -> None:
    spec, cfg = FAMILIES[family], TrainConfig(family=family, latent_dim=4, seed=0)
    torch.manual_seed(0)
    model = SemanticAutoencoder(spec.model_config(cfg, digits_100)).train()
    objective = spec.objective(cfg, digits_100.num_labels)
    x, y = digits_100.images[::5], digits_100.labels[::5]  # 20 items, two of each label
    total, parts = objective(model, x, y)
    assert total.dim() == 0 and math.isfinite(total.item())
    assert "rec" in parts and all(math.isfinite(v) for v in parts.values())
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_reconstruction_loss_is_the_per_pixel_mean_bce() -> None:
    torch.manual_seed(0)
    logits, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    p = torch.sigmoid(logits)
    slow = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    torch.testing.assert_close(reconstruction_loss(logits, x), slow)


def _slow_euclidean_triplet(z: torch.Tensor, labels: list[int], margin: float) -> float:
    losses: list[float] = []
    for a, ya in enumerate(labels):
        for p, yp in enumerate(labels):
            for n, yn in enumerate(labels):
                if p != a and yp == ya and yn != ya:
                    d_ap, d_an = (z[a] - z[p]).norm().item(), (z[a] - z[n]).norm().item()
                    losses.append(max(0.0, d_ap - d_an + margin))
    return sum(losses) / len(losses)


def test_euclidean_triplet_loss_matches_a_loop_over_triplets() -> None:
    torch.manual_seed(0)
    z, labels = torch.randn(9, 3), [0, 0, 1, 1, 1, 2, 2, 0, 2]
    got = euclidean_triplet_loss(z, torch.tensor(labels), margin=1.0)
    assert got.item() == pytest.approx(_slow_euclidean_triplet(z, labels, 1.0), rel=1e-5)


def test_euclidean_triplet_loss_is_zero_with_the_graph_kept_when_no_triplet_exists() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    loss = euclidean_triplet_loss(z, torch.tensor([1, 1, 1, 1]), margin=1.0)
    assert loss.item() == 0.0 and loss.requires_grad


def test_style_class_share_is_the_label_share_of_the_style_variance() -> None:
    torch.manual_seed(0)
    style, labels = torch.randn(12, 3), torch.tensor([0, 1, 2] * 4)
    mean = style.mean(0)
    total = sum(((s - mean) ** 2).sum() for s in style) / len(style)
    between = sum((labels == k).sum() / len(style) * ((style[labels == k].mean(0) - mean) ** 2).sum() for k in range(3))
    assert style_class_share(style, labels).item() == pytest.approx((between / total).item(), rel=1e-5)
    same_mean = style - torch.stack([style[labels == k].mean(0) for k in labels.tolist()])  # every label centred at 0
    assert style_class_share(same_mean, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_restyled_label_consistency_is_the_order_heads_cross_entropy(make_model: Any) -> None:
    model = make_model(latent_dim=6, num_labels=10, ordinal_head=True)
    images, labels = torch.rand(5, 1, 28, 28), torch.tensor([0, 3, 3, 7, 9])
    want = F.cross_entropy(model.encoder(images)[:, :10], labels)
    torch.testing.assert_close(restyled_label_consistency(model, images, labels), want)
