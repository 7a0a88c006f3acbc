"""Hallucination honours the labels it is given: examples placed on their label's sector, the
examples the model reads otherwise listed, and the self-check that redraws or drops misread images."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import models.hallucination as hallucination
from models import load_checkpoint, read_meta
from models.data import ImageSet
from models.hallucination import STRATEGIES, check_labels, draw_codes, hallucinate, plan_draws
from models.judge import get_judge
from models.networks import SemanticAutoencoder
from models.order_circle import place_in_sectors, snap_order_angle

ModelFactory = Callable[..., SemanticAutoencoder]


def ordered(make_model: ModelFactory, **extra: object) -> SemanticAutoencoder:
    """An untrained atnl-like model: ordinal head, sector decoder, fixed lean."""
    return make_model(num_labels=10, ordinal_head=True, sector_decoder=True, style_angle=0.6, **extra)


@pytest.fixture(scope="module")
def few_shot(mnist_500: ImageSet) -> ImageSet:
    """Two real digits of each label except 5 (none: only ordinal paths can make one)."""
    return mnist_500.subset([i for i in range(500) if i % 50 < 2 and i // 50 != 5])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_image_is_drawn_in_its_label_s_sector_whatever_the_encoder_read(
    make_model: ModelFactory, few_shot: ImageSet, strategy: str
) -> None:
    model = ordered(make_model)
    labels = few_shot.labels
    with torch.no_grad():
        read = model.label_probs(few_shot.images).argmax(1)
        codes = model.code(few_shot.images)
    assert (read != labels).sum() >= len(labels) // 2  # an untrained model misreads most examples
    draws = plan_draws(labels, 10, [6] * 10, strategy, torch.Generator().manual_seed(0))
    wanted = torch.tensor([j.label for j in draws])
    placed = draw_codes(place_in_sectors(codes, labels, 10, model.cfg.circle_span), draws, spherical=True)
    assert torch.equal(snap_order_angle(placed, model.cfg)[1].argmax(1), wanted)
    as_encoded = draw_codes(codes, draws, spherical=True)  # what the encoder's angles alone would draw
    assert not torch.equal(snap_order_angle(as_encoded, model.cfg)[1].argmax(1), wanted)


def test_examples_the_model_reads_otherwise_are_listed(make_model: ModelFactory, few_shot: ImageSet) -> None:
    model = ordered(make_model)
    made = hallucinate(model, few_shot.images, few_shot.labels, 10, per_class=1, seed=0, filter="none")
    with torch.no_grad():
        probs = model.label_probs(few_shot.images)
    expected = [(i, int(y), int(probs[i].argmax())) for i, y in enumerate(few_shot.labels) if probs[i].argmax() != y]
    assert [(d.index, d.given, d.read) for d in made.disagreements] == expected
    for d in made.disagreements:
        assert d.confidence == pytest.approx(float(probs[d.index, d.read]))
    assert made.checked and made.replaced == made.dropped == 0
    assert made.flagged == sum(s.read != s.label for s in made.samples)


def test_baselines_are_not_checked(make_model: ModelFactory, few_shot: ImageSet) -> None:
    made = hallucinate(make_model(spherical=False), few_shot.images, few_shot.labels, 10, per_class=2, seed=0)
    assert not made.checked and made.disagreements == [] and made.replaced == made.dropped == made.flagged == 0
    assert len(made.samples) == 20 and all(s.read is None for s in made.samples)


def test_the_self_check_keeps_the_best_read_draw_and_drops_what_stays_misread(
    make_model: ModelFactory, few_shot: ImageSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ordered(make_model, label_reader=True)
    monkeypatch.setattr(hallucination, "CHECK_CONFIDENCE", 1.01)  # doubt everything: every slot takes all its draws
    x, y = few_shot.images, few_shot.labels
    kept = hallucinate(model, x, y, 10, per_class=3, strategy="mixed", seed=0)
    unchecked = hallucinate(model, x, y, 10, per_class=3, strategy="mixed", seed=0, filter="none")
    assert len(kept.samples) + kept.dropped == len(unchecked.samples) == 30
    assert kept.replaced > 0 and kept.dropped > 0  # an untrained model reads some labels in no draw
    assert all(s.read == s.label for s in kept.samples)
    assert unchecked.flagged == sum(s.read != s.label for s in unchecked.samples) > 0
    with torch.no_grad():  # each kept image is its draw's image, read as the answer says
        codes = place_in_sectors(model.code(x), y, 10, model.cfg.circle_span)
        for s in kept.samples:
            i, j = s.sources
            kind = "restyle" if y[i] == s.label and hallucination.RESTYLE_OMEGA[0] <= s.omega and i != j else None
            if kind is None:
                continue
            draw = hallucination.Draw(i, j, s.omega, s.label, "restyle")
            image = model.decode(draw_codes(codes, [draw], spherical=True))
            torch.testing.assert_close(s.image[None], image, atol=1e-5, rtol=0)
            assert int(check_labels(model, image)[0]) == s.read
    again = hallucinate(model, x, y, 10, per_class=3, strategy="mixed", seed=0)
    assert [(s.label, s.sources, s.omega) for s in again.samples] == [(s.label, s.sources, s.omega) for s in kept.samples]


@pytest.mark.e2e  # trains the small checkpoint (about a minute) and a judge: left out of `make test-fast`
def test_a_misread_example_s_label_is_what_an_outside_classifier_reads(
    small_checkpoint: Path, mnist_5k: ImageSet, atnl_cache_dir: Path
) -> None:
    """A trained model, a few-shot set holding an example it reads wrong and no 5: for every
    strategy, a judge trained apart from the model (on the same train split) reads the images as
    the labels they carry."""
    model = load_checkpoint(small_checkpoint)
    test = read_meta(small_checkpoint)["data"]["test_indices"]
    train = sorted(set(range(len(mnist_5k))) - set(test))
    judge, _ = get_judge(mnist_5k, train, test)
    x, y = mnist_5k.images[test], mnist_5k.labels[test]
    with torch.no_grad():
        read = model.label_probs(x).argmax(1)
    misread = int((read != y).nonzero()[0])  # the first test image the model reads as another label
    picks = [misread] + [int(i) for k in range(10) if k != 5 for i in (y == k).nonzero().squeeze(1)[:2]]
    few_x, few_y = x[picks], y[picks]
    for strategy in STRATEGIES:
        made = hallucinate(model, few_x, few_y, 10, per_class=4, strategy=strategy, seed=0)
        assert (0, int(y[misread]), int(read[misread])) in [(d.index, d.given, d.read) for d in made.disagreements]
        assert made.dropped <= 2, strategy
        labels = torch.tensor([s.label for s in made.samples])
        right = judge.predict(torch.stack([s.image for s in made.samples])) == labels
        assert right.float().mean() >= 0.9, (strategy, Counter(labels[~right].tolist()))
        assert int(y[misread]) in labels and (strategy == "same" or 5 in labels)  # ``same`` fills no empty label
