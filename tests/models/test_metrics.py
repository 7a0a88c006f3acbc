"""Metrics (docs/METHOD.md, Metrics; docs/API.md §8.1) on hand-made inputs: the path rule of SPS, seeded pair sampling,
latent accuracy, reconstruction identity, within-label diversity, the Fréchet distance, and the
quality of a tiny model's hallucinations."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from models.data import ImageSet
from models.hallucination import DEFAULT_STRATEGY, default_strategy
from models.judge import JudgeCNN, get_judge
from models.metrics import (
    SPS_MIN_GAP,
    frechet_distance,
    hallucination_quality,
    latent_accuracy,
    path_passes,
    reconstruction_error,
    sample_pairs,
    within_label_diversity,
)
from models.networks import SemanticAutoencoder


@pytest.mark.parametrize(
    ("path", "a", "b", "expected"),
    [
        ([0, 0, 1, 2, 2, 3, 4, 5], 0, 5, (True, 1.0, True)),  # Figure 6: through 1, 2, 3, 4
        ([0, 1, 2, 3, 4, 5], 0, 5, (True, 1.0, True)),
        ([0, 0, 5, 5], 0, 5, (False, 0.0, True)),  # jumps straight from 0 to 5
        ([0, 1, 3, 5], 0, 5, (False, 0.5, True)),  # skips 2 and 4
        ([0, 2, 1, 2, 3, 4, 5], 0, 5, (False, 1.0, False)),  # covers all but goes back
        ([0, 1, 2, 3, 4, 6], 0, 5, (False, 1.0, True)),  # ends at the wrong label
        ([1, 1, 2, 3, 4, 5], 0, 5, (False, 1.0, True)),  # starts at the wrong label
        ([3, 4, 5], 3, 5, (True, 1.0, True)),
        ([3, 3, 5, 5], 3, 5, (False, 0.0, True)),
        ([2, 3], 2, 3, (True, 1.0, True)),  # nothing between: coverage is vacuously full
    ],
)
def test_path_passes(path: list[int], a: int, b: int, expected: tuple[bool, float, bool]) -> None:
    assert path_passes(path, a, b) == expected


def test_sample_pairs_respects_gap_eligibility_and_seed() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(10, (300,), generator=g)
    eligible = torch.rand(300, generator=g) < 0.7
    pairs = sample_pairs(labels, eligible, 200, seed=3)
    assert len(pairs) == 200
    for i, j in pairs:
        assert i != j and bool(eligible[i]) and bool(eligible[j])
        assert labels[j] - labels[i] >= SPS_MIN_GAP
    assert sample_pairs(labels, eligible, 200, seed=3) == pairs
    assert sample_pairs(labels, eligible, 200, seed=4) != pairs
    wide = sample_pairs(labels, eligible, 50, seed=3, min_gap=7)
    assert all(labels[j] - labels[i] >= 7 for i, j in wide)


def test_sample_pairs_fails_when_no_pair_has_the_gap() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3])
    eligible = torch.tensor([True, True, False, True, True, False, False])  # only labels 0 and 1 eligible
    with pytest.raises(ValueError, match="label gap >= 2"):
        sample_pairs(labels, eligible, 1, seed=0)


def test_latent_accuracy_on_separable_and_random_codes() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 8)) * 5
    z = centres[y] + rng.normal(size=(120, 8)) * 0.1
    acc = latent_accuracy(z[::2], y[::2], z[1::2], y[1::2])
    assert acc == {"linear_probe_acc": 1.0, "knn5_cosine_acc": 1.0}
    noise = latent_accuracy(rng.normal(size=(60, 8)), y[::2], rng.normal(size=(60, 8)), y[1::2])
    assert noise["linear_probe_acc"] < 0.6 and noise["knn5_cosine_acc"] < 0.6


def test_the_judge_is_the_same_whatever_ran_before_it(mnist_500: ImageSet, tmp_path: Path) -> None:
    data = mnist_500.subset(list(range(0, 500, 5)))  # 10 a label: ten epochs in a second
    train_idx, test_idx = list(range(0, 100, 2)), list(range(1, 100, 2))
    torch.manual_seed(1)
    first, acc_first = get_judge(data, train_idx, test_idx, cache_dir=tmp_path / "a")
    torch.manual_seed(2)  # another global state, and no cache to load from
    second, acc_second = get_judge(data, train_idx, test_idx, cache_dir=tmp_path / "b")
    assert acc_first == acc_second
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


class FixedDecoder:
    """Stands in for a model in ``reconstruction_error``: code is the flat image, decode is ``draw``."""

    def __init__(self, draw: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.draw = draw

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.draw(z.view(-1, 1, 28, 28))


def test_reconstruction_identity_of_a_perfect_and_a_constant_decoder(digits_100: ImageSet) -> None:
    x = digits_100.images
    perfect = reconstruction_error(cast(SemanticAutoencoder, FixedDecoder(lambda x: x)), x)
    assert perfect["recon_identity"] == 1.0 and perfect["recon_mse"] == 0.0
    prototype = x.mean(0, keepdim=True)
    constant = reconstruction_error(cast(SemanticAutoencoder, FixedDecoder(lambda x: prototype.expand_as(x))), x)
    assert constant["recon_identity"] == pytest.approx(1 / len(x))  # every reconstruction is nearest one image
    assert constant["recon_bce"] > perfect["recon_bce"]


def test_within_label_diversity_is_the_mean_pairwise_distance_per_label() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 1, 4, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # labels 2 and 3 have one image each: no pair, left out
    per_label = []
    for k in (0, 1):
        items = x[y == k]
        pairs = [float((a - b).norm()) for a, b in itertools.permutations(items, 2)]
        per_label.append(sum(pairs) / len(pairs))
    assert within_label_diversity(x, y) == pytest.approx(np.mean(per_label), rel=1e-5)
    assert within_label_diversity(x[[0, 0]], y[:2]) == pytest.approx(0.0, abs=1e-5)  # two copies of one image


def test_frechet_distance_of_identical_and_shifted_sets() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))  # correlated features
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    shift = rng.normal(size=6)
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-4, abs=1e-4)
    # b = 2a: Σ_b = 4 Σ_a, (Σ_a Σ_b)^½ = 2 Σ_a, so the distance is ||μ_a||² + tr(Σ_a).
    expected = float((a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-4)


@pytest.fixture(scope="module")
def judged_digits(
    mnist_500: ImageSet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ImageSet, list[int], list[int], JudgeCNN]:
    """120 real digits split 6 + 6 a label, and a judge trained on the first half (seconds)."""
    data = mnist_500.subset([i for i in range(500) if i % 50 < 12])
    train_idx = [i for i in range(120) if i % 12 < 6]
    test_idx = [i for i in range(120) if i % 12 >= 6]
    judge, _ = get_judge(data, train_idx, test_idx, cache_dir=tmp_path_factory.mktemp("judge"))
    return data, train_idx, test_idx, judge


@pytest.mark.parametrize("ordered", [True, False], ids=["atnl-like", "euclidean"])
def test_hallucination_quality_of_a_tiny_model(
    ordered: bool, make_model: Callable[..., SemanticAutoencoder], judged_digits: tuple[Any, ...]
) -> None:
    data, train_idx, test_idx, judge = judged_digits
    if ordered:
        model = make_model(num_labels=10, ordinal_head=True, sector_decoder=True, style_angle=0.6)
    else:
        model = make_model(spherical=False)
    strategy = default_strategy(model)
    assert strategy == (DEFAULT_STRATEGY if ordered else "both")
    q = hallucination_quality(model, judge, data, train_idx, test_idx, strategy, shots=3, per_class=6, seed=1)
    assert (q["strategy"], q["shots"], q["per_class"]) == (strategy, 3, 6)
    for key in ("judge_agreement", "jittered_judge_agreement"):
        assert 0.0 <= q[key] <= 1.0, key
    for key in ("diversity_ratio", "jittered_diversity_ratio", "frechet", "jittered_frechet"):
        assert math.isfinite(q[key]) and q[key] >= -1e-3, key
    assert q["jittered_judge_agreement"] > 0.5  # jitters of real digits stay readable to a real judge
    again = hallucination_quality(model, judge, data, train_idx, test_idx, strategy, shots=3, per_class=6, seed=1)
    assert again == q
