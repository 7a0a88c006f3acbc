"""AAE and ACAI: each trains a step, its losses are finite, and its adversary learns only in training."""

from __future__ import annotations

import math

import pytest
import torch

from models.adversarial import ACAIObjective, AdversarialAutoencoderObjective
from models.data import ImageSet
from models.families import FAMILIES
from models.networks import ModelConfig, SemanticAutoencoder
from models.training import TrainConfig, train

ADVERSARIAL = {"aae": AdversarialAutoencoderObjective, "acai": ACAIObjective}


def small_model() -> SemanticAutoencoder:
    torch.manual_seed(0)
    return SemanticAutoencoder(ModelConfig(latent_dim=6, width=4, hidden=32, spherical=False))


def adversary_params(objective: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in objective.parameters()])


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_registered_as_euclidean_deterministic_families(family: str) -> None:
    spec = FAMILIES[family]
    assert (spec.spherical, spec.variational) == (False, False)
    assert isinstance(spec.objective(TrainConfig(family=family), num_labels=10), ADVERSARIAL[family])


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_one_step_gives_finite_losses_and_updates_both_players(family: str, digits_100: ImageSet) -> None:
    model, objective = small_model().train(), ADVERSARIAL[family]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = digits_100.images[:20], digits_100.labels[:20]
    before_model = torch.cat([p.detach().flatten().clone() for p in model.parameters()])

    loss, parts = objective(model, x, y)  # builds the adversary lazily and steps it once
    first_adversary = adversary_params(objective)
    opt.zero_grad()
    loss.backward()
    opt.step()
    _, _ = objective(model, x, y)

    assert math.isfinite(loss.item())
    assert parts and all(math.isfinite(v) for v in parts.values())
    assert not torch.equal(before_model, torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(first_adversary, adversary_params(objective)), "the adversary did not learn"


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_adversary_does_not_step_outside_training(family: str, digits_100: ImageSet) -> None:
    model, objective = small_model().train(), ADVERSARIAL[family]()
    x, y = digits_100.images[:20], digits_100.labels[:20]
    objective(model, x, y)
    frozen = adversary_params(objective)
    with torch.no_grad():
        objective(model.eval(), x, y)
    assert torch.equal(frozen, adversary_params(objective))


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_trains_through_the_shared_loop(family: str, digits_100: ImageSet) -> None:
    cfg = TrainConfig(family=family, epochs=1, batch_size=20, latent_dim=6, device="cpu")
    result = train(cfg, digits_100)
    assert result.history and all(math.isfinite(v) for v in result.history[-1].values())
    assert result.objective["objective"].startswith("BCE")
    assert not result.model.cfg.spherical
