"""The training loop on real digits: the loss falls, progress and stop hooks, config checks, every family."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from models.data import ImageSet, split_indices
from models.families import FAMILIES
from models.losses import restyled_label_consistency
from models.networks import SemanticAutoencoder
from models.order_circle import restyled_latents
from models.training import TrainConfig, TrainingStopped, train

TINY = {"latent_dim": 8, "batch_size": 50, "device": "cpu", "seed": 0}
"""400 training images in 8 class-balanced batches per epoch."""


@pytest.fixture(scope="module")
def mnist_100(mnist_500: ImageSet) -> ImageSet:
    """10 real digits of each label."""
    return mnist_500.subset([i for i in range(500) if i % 50 < 10])


def test_a_tiny_atnl_run_lowers_its_loss(mnist_500: ImageSet) -> None:
    # A constant rate: 24 steps of a cosine schedule spend too few at full rate to test the loop by.
    result = train(TrainConfig(epochs=3, lr_schedule="constant", **TINY), mnist_500)
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < 0.9 * history[0]["loss"], history
    assert history[-1]["rec"] < history[0]["rec"], history
    assert {"loss", "rec", "atnl", "circle"} <= set(history[0])

    train_idx, test_idx = split_indices(mnist_500.labels, 0.2, 0)
    assert (result.train_indices, result.test_indices) == (train_idx, test_idx)
    assert not result.model.training and result.seconds > 0
    assert result.objective["atnl"]["name"] == "AngularTripletNeighborLoss"
    z = result.model.encode(mnist_500.images[:20])
    torch.testing.assert_close(z.norm(dim=1), torch.ones(20), atol=1e-5, rtol=0)


def test_progress_is_reported_after_every_step(mnist_100: ImageSet) -> None:
    seen: list[dict[str, Any]] = []
    cfg = TrainConfig(epochs=2, latent_dim=4, batch_size=20, device="cpu")  # 80 training images: 4 steps
    train(cfg, mnist_100, on_progress=seen.append)
    assert [(p["epoch"], p["step"]) for p in seen] == [(e, s) for e in (1, 2) for s in (1, 2, 3, 4)]
    for p in seen:
        assert p["epochs"] == 2 and p["steps"] == 4
        assert isinstance(p["loss"], float) and p["loss"] > 0 and "rec" in p


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_learning_rate_follows_its_schedule(mnist_100: ImageSet, schedule: str) -> None:
    seen: list[dict[str, Any]] = []
    cfg = TrainConfig(epochs=2, latent_dim=4, batch_size=20, device="cpu", lr=2e-3, lr_schedule=schedule)
    train(cfg, mnist_100, on_progress=seen.append)
    rates = [p["lr"] for p in seen]
    assert rates[0] == pytest.approx(2e-3)
    if schedule == "constant":
        assert rates == [pytest.approx(2e-3)] * 8
    else:  # half a cosine over the 8 steps, from the full rate towards 0
        expected = [1e-3 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
        assert rates == pytest.approx(expected)


def test_should_stop_raises_training_stopped(mnist_100: ImageSet) -> None:
    polls: list[int] = []
    steps: list[dict[str, Any]] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) == 3

    cfg = TrainConfig(epochs=5, latent_dim=4, batch_size=20, device="cpu")
    with pytest.raises(TrainingStopped, match="epoch 1, step 3"):
        train(cfg, mnist_100, on_progress=steps.append, should_stop=should_stop)
    assert len(steps) == 2  # polled before each step; the third poll stopped it


def test_same_seed_trains_the_same_weights(mnist_100: ImageSet) -> None:
    cfg = TrainConfig(epochs=1, latent_dim=4, batch_size=20, device="cpu", seed=3)
    a, b = train(cfg, mnist_100), train(cfg, mnist_100)
    assert a.history == b.history
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_trains_one_step(family: str, mnist_100: ImageSet) -> None:
    cfg = TrainConfig(family=family, epochs=1, latent_dim=4, batch_size=80, device="cpu", seed=1)
    torch.manual_seed(cfg.seed)  # train() starts from the weights this seed gives
    initial = SemanticAutoencoder(FAMILIES[family].model_config(cfg, mnist_100))
    steps: list[dict[str, Any]] = []
    result = train(cfg, mnist_100, on_progress=steps.append)
    assert len(steps) == 1 and len(result.history) == 1
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    spec = FAMILIES[family]
    assert (result.model.cfg.spherical, result.model.cfg.variational) == (spec.spherical, spec.variational)
    changed = [k for k, v in initial.state_dict().items() if not torch.equal(v, result.model.state_dict()[k])]
    assert changed, "one optimiser step must move the weights"
    z = result.model.encode(mnist_100.images[:5])
    assert z.shape == (5, 4)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)  # public latents are unit for all


def test_train_config_from_dict_round_trips_and_rejects_unknown_keys() -> None:
    cfg = TrainConfig(epochs=2, latent_dim=5, margin=0.2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown training options \['epoch', 'lr_decay'\]"):
        TrainConfig.from_dict({"epoch": 3, "lr_decay": 0.5})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"family": "gan"}, "unknown family"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"latent_dim": 0}, "latent_dim must be >= 1"),
        ({"family": "atnl", "latent_dim": 2}, "latent_dim must be >= 3"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ],
)
def test_train_config_rejects_bad_values(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(fields)


def test_a_batch_smaller_than_the_label_count_is_refused(mnist_100: ImageSet) -> None:
    with pytest.raises(ValueError, match="smaller than the number of labels"):
        train(TrainConfig(epochs=1, latent_dim=4, batch_size=5, device="cpu"), mnist_100)


def test_restyled_label_consistency_teaches_the_decoder_only(mnist_100: ImageSet) -> None:
    model = SemanticAutoencoder(FAMILIES["atnl"].model_config(TrainConfig(**TINY), mnist_100))
    x, y = mnist_100.images[:20], mnist_100.labels[:20]
    _, u = model.order_logits_and_code(x)
    mixed = restyled_latents(u.detach())
    torch.testing.assert_close(mixed[:, :2], u[:, :2].detach())  # the order part (the label) is kept
    loss = restyled_label_consistency(model, model.decode(mixed), y)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    decoder_grads = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None for g in decoder_grads) and sum(g.abs().sum() for g in decoder_grads) > 0  # type: ignore[union-attr]
    # The encoder is a frozen critic: none of this term's gradient reaches it
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())


@pytest.mark.parametrize(
    ("spec", "side", "shape", "width"), [("digits-8x8", 0, (1, 8, 8), 32), ("pose-photos", 0, (3, 48, 48), 32)]
)
def test_every_family_trains_at_the_data_sets_own_side_and_colour(
    spec: str, side: int, shape: tuple[int, ...], width: int
) -> None:
    from models.data import load_dataset

    data = load_dataset(spec, image_size=side)
    data = data.subset(torch.cat([torch.nonzero(data.labels == k)[:6, 0] for k in range(data.num_labels)]))
    for family in FAMILIES:
        cfg = TrainConfig(family=family, dataset=spec, epochs=1, batch_size=data.num_labels * 4, latent_dim=6, reader_epochs=1)
        model = train(cfg, data).model
        assert (model.cfg.channels, model.cfg.image_size, model.cfg.image_size) == shape and model.cfg.width == width
        assert model.cfg.preprocess == ("fit" if shape[0] == 3 else "digits")
        with torch.no_grad():
            assert model.decode(model.encode(data.images[:3])).shape == (3, *shape)
