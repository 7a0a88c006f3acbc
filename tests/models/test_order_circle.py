"""The order circle: sector centres, snapping to the nearest sector, the lean, restyling, placing on a label."""

from __future__ import annotations

import math

import pytest
import torch

from models.arccos import ARCCOS_EPS, safe_arccos
from models.networks import ModelConfig
from models.order_circle import (
    CIRCLE_SPAN,
    at_lean,
    order_angle,
    place_in_sectors,
    restyled_latents,
    sector_centres,
    sector_decoding,
    snap_order_angle,
)


def test_sector_centres_are_evenly_spaced_and_centred_within_the_span() -> None:
    phi = sector_centres(10, CIRCLE_SPAN)
    width = CIRCLE_SPAN / 10
    torch.testing.assert_close(phi[1:] - phi[:-1], torch.full((9,), width))
    assert phi.sum().item() == pytest.approx(0.0, abs=1e-6)
    assert phi[-1] - phi[0] + width == pytest.approx(CIRCLE_SPAN) and CIRCLE_SPAN < math.pi


def test_the_sector_decoder_reads_the_nearest_sector_and_passes_the_rest() -> None:
    cfg = ModelConfig(latent_dim=5, num_labels=10, sector_decoder=True)
    centres = sector_centres(10, cfg.circle_span)
    psi = torch.tensor([centres[3] + 0.4 * (centres[4] - centres[3]), centres[7] - 0.01])
    rho = torch.tensor([0.8, 0.5])
    style = torch.randn(2, 3)
    z = torch.cat([torch.stack([rho * torch.cos(psi), rho * torch.sin(psi)], 1), style], dim=1)
    plane_and_style, one_hot = snap_order_angle(z, cfg)
    assert one_hot.argmax(1).tolist() == [3, 7] and one_hot.sum(1).tolist() == [1.0, 1.0]
    torch.testing.assert_close(order_angle(plane_and_style), centres[[3, 7]], atol=1e-5, rtol=0)
    torch.testing.assert_close(plane_and_style[:, :2].norm(dim=1), rho)
    torch.testing.assert_close(plane_and_style[:, 2:], style)


def test_with_a_fixed_lean_the_sector_decoder_puts_the_latent_back_at_that_lean() -> None:
    cfg = ModelConfig(latent_dim=5, num_labels=10, sector_decoder=True, style_angle=0.6)
    z = torch.tensor([[0.99, 0.05, 0.1, 0.0, 0.0], [0.3, -0.2, 0.5, 0.5, 0.6]])  # leaning off 0.6 either way
    plane_and_style, _ = snap_order_angle(z, cfg)
    torch.testing.assert_close(plane_and_style.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(plane_and_style[:, :2].norm(dim=1), torch.full((2,), math.cos(0.6)))


def test_at_lean_gives_unit_latents_that_far_off_the_circle() -> None:
    plane = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    plane_part, style_part = at_lean(plane, torch.randn(2, 4), 0.3)
    z = torch.cat([plane_part, style_part], dim=1)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(torch.arccos(z[:, :2].norm(dim=1)), torch.full((2,), 0.3))


def test_sector_decoding_needs_the_option_and_two_labels() -> None:
    assert sector_decoding(ModelConfig(num_labels=10, sector_decoder=True))
    assert not sector_decoding(ModelConfig(num_labels=10))
    assert not sector_decoding(ModelConfig(num_labels=1, sector_decoder=True))


def test_restyled_latents_keep_each_order_part_and_take_a_style_from_the_batch() -> None:
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(8, 5), dim=1)
    mixed = restyled_latents(z)
    torch.testing.assert_close(mixed.norm(dim=1), torch.ones(8))
    scale = mixed[:, :2].norm(dim=1, keepdim=True) / z[:, :2].norm(dim=1, keepdim=True)
    torch.testing.assert_close(mixed[:, :2], scale * z[:, :2])  # same order angle
    styles = torch.nn.functional.normalize(z[:, 2:], dim=1)
    for s in torch.nn.functional.normalize(mixed[:, 2:], dim=1):
        assert (styles - s).norm(dim=1).min() < 1e-5  # some item's style direction


def test_safe_arccos_stays_finite_with_finite_gradients_at_the_ends() -> None:
    cos = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    angles = safe_arccos(cos)
    angles.sum().backward()
    near_pi, right, near_0 = angles.tolist()
    assert right == pytest.approx(math.pi / 2)
    assert near_pi == pytest.approx(math.pi, abs=math.sqrt(2 * ARCCOS_EPS) * 1.01) and 0 < near_0 < 2e-3
    assert torch.isfinite(cos.grad).all()  # type: ignore[arg-type]


def test_place_in_sectors_turns_each_order_angle_to_its_label_and_keeps_radius_and_style() -> None:
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    labels = torch.randint(10, (64,))
    placed = place_in_sectors(z, labels, 10, CIRCLE_SPAN)
    torch.testing.assert_close(order_angle(placed), sector_centres(10, CIRCLE_SPAN)[labels])
    torch.testing.assert_close(placed[:, :2].norm(dim=1), z[:, :2].norm(dim=1))
    torch.testing.assert_close(placed[:, 2:], z[:, 2:], atol=0, rtol=0)
    torch.testing.assert_close(placed.norm(dim=1), torch.ones(64))
    cfg = ModelConfig(latent_dim=8, num_labels=10, sector_decoder=True)
    assert torch.equal(snap_order_angle(placed, cfg)[1].argmax(1), labels)  # the decoder draws the label given
