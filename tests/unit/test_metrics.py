"""Metrics of DESIGN §6 on hand-made inputs: the path rule of SPS, seeded pair sampling, latent accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import ImageSet
from models.judge import get_judge
from models.metrics import SPS_MIN_GAP, latent_accuracy, path_passes, sample_pairs


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
