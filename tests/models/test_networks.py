"""The shared backbone: unit latents, the ordinal head's order angle, the fixed lean, unit style input."""

from __future__ import annotations

import math

import pytest
import torch

from models.data import ImageSet
from models.errors import InputError
from models.networks import ModelConfig, SemanticAutoencoder
from models.order_circle import sector_centres

LEAN = 0.6
"""Radians off the order circle used by the fixed-lean models below."""


def ordinal(**extra: object) -> SemanticAutoencoder:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=6, width=4, hidden=32, num_labels=10, ordinal_head=True, sector_decoder=True, **extra)  # type: ignore[arg-type]
    return SemanticAutoencoder(cfg)


def order_angle(z: torch.Tensor) -> torch.Tensor:
    return torch.atan2(z[:, 1], z[:, 0])


def test_a_fixed_lean_puts_every_latent_at_the_same_distance_from_the_order_circle(mnist_500: ImageSet) -> None:
    x = mnist_500.images[::10]
    fixed, free = ordinal(style_angle=LEAN).eval(), ordinal().eval()
    with torch.no_grad():
        z_fixed, z_free = fixed.encode(x), free.encode(x)
    torch.testing.assert_close(z_fixed.norm(dim=1), torch.ones(len(x)), atol=1e-5, rtol=0)
    torch.testing.assert_close(z_fixed[:, :2].norm(dim=1), torch.full((len(x),), math.cos(LEAN)), atol=1e-5, rtol=0)
    assert z_free[:, :2].norm(dim=1).std() > 1e-3  # free: the style outputs' norm sets the lean


def test_snapping_at_eval_puts_the_order_angle_on_the_most_likely_sector_centre(mnist_500: ImageSet) -> None:
    x = mnist_500.images[::10]
    model = ordinal(style_angle=LEAN, snap_order_at_eval=True, order_temperature=1.0)
    centres = sector_centres(10, model.cfg.circle_span)
    with torch.no_grad():
        logits, _ = model.order_logits_and_code(x)
        model.eval()
        snapped = order_angle(model.encode(x))
        model.train()
        soft = order_angle(model.order_logits_and_code(x)[1])
    torch.testing.assert_close(snapped, centres[logits.argmax(1)], atol=1e-5, rtol=0)
    expected_soft = torch.softmax(logits, dim=1) @ centres  # training keeps the soft angle for its gradients
    torch.testing.assert_close(soft, expected_soft, atol=1e-5, rtol=0)
    assert (soft - snapped).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(2, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_encode_rejects_images_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        ordinal().encode(torch.zeros(shape))


def test_decode_rejects_latents_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match=r"expected latents of shape \(N, 6\)"):
        ordinal().decode(torch.zeros(2, 5))


def test_unit_style_input_decodes_the_same_whatever_the_lean() -> None:
    from dataclasses import replace

    base = ModelConfig(latent_dim=8, num_labels=10, sector_decoder=True, ordinal_head=True, unit_style_input=True)
    torch.manual_seed(0)
    model = SemanticAutoencoder(replace(base, style_angle=0.45)).eval()
    plane, style = torch.tensor([[1.0, 0.2]]), torch.randn(1, 6)
    leaning = [torch.cat([math.cos(r) * plane / plane.norm(), math.sin(r) * style / style.norm()], 1) for r in (0.2, 0.45, 0.9)]
    images = [model.decode(z) for z in leaning]
    torch.testing.assert_close(images[0], images[1])
    torch.testing.assert_close(images[2], images[1])
    other = torch.cat([math.cos(0.45) * plane / plane.norm(), -math.sin(0.45) * style / style.norm()], 1)
    assert not torch.allclose(model.decode(other), images[1])  # the style direction still matters


def test_label_probs_is_the_lower_of_the_order_head_and_the_label_reader(mnist_500: ImageSet) -> None:
    x = mnist_500.images[::25]
    model = ordinal(style_angle=LEAN, label_reader=True).eval()
    assert model.reader is not None and ordinal().reader is None
    with torch.no_grad():
        head = torch.softmax(model.order_logits_and_code(x)[0], dim=1)
        reader = torch.softmax(model.reader(x), dim=1)
        probs = model.label_probs(x)
    for n in range(len(x)):  # slow restatement, item by item
        for k in range(10):
            assert probs[n, k].item() == min(head[n, k].item(), reader[n, k].item())


def test_only_models_with_an_order_circle_read_labels(mnist_500: ImageSet) -> None:
    torch.manual_seed(0)
    baseline = SemanticAutoencoder(ModelConfig(latent_dim=6, width=4, hidden=32, spherical=False))
    assert not baseline.has_order_circle and ordinal().has_order_circle
    with pytest.raises(ValueError, match="no order circle to read labels from"):
        baseline.label_probs(mnist_500.images[:2])
    with pytest.raises(ValueError, match="label_reader needs num_labels >= 2"):
        SemanticAutoencoder(ModelConfig(latent_dim=6, label_reader=True))


@pytest.mark.parametrize(("side", "channels"), [(8, 1), (9, 3), (28, 1), (48, 3), (50, 3), (128, 3)])
def test_the_backbone_builds_its_conv_stack_for_any_side_and_channels(side: int, channels: int) -> None:
    from models.networks import GRID_SIDE, conv_sides

    model = SemanticAutoencoder(ModelConfig(image_size=side, channels=channels, latent_dim=5))
    z = model.encode(torch.rand(2, channels, side, side))
    assert model.decode(z).shape == (2, channels, side, side)
    assert conv_sides(side)[-1] <= GRID_SIDE


def test_sides_below_eight_and_other_channel_counts_are_refused() -> None:
    with pytest.raises(InputError, match="at least 8"):
        SemanticAutoencoder(ModelConfig(image_size=6))
    with pytest.raises(InputError, match="channels must be 1"):
        SemanticAutoencoder(ModelConfig(channels=4))
