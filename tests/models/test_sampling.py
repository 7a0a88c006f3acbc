"""class_balanced_batches: every label in every batch, sizes, seeded determinism."""

from __future__ import annotations

import pytest
import torch

from models.sampling import class_balanced_batches


def epoch(labels: torch.Tensor, batch_size: int, seed: int) -> list[torch.Tensor]:
    return list(class_balanced_batches(labels, batch_size, torch.Generator().manual_seed(seed)))


def skewed_labels() -> torch.Tensor:
    """Four labels with 40, 25, 12 and 7 items, shuffled."""
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate([40, 25, 12, 7])])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize("batch_size", [4, 10, 16, 23])
def test_every_label_in_every_batch_with_the_requested_size(batch_size: int) -> None:
    labels = skewed_labels()
    batches = epoch(labels, batch_size, seed=0)
    assert len(batches) == len(labels) // batch_size
    per_class = batch_size // 4
    for idx in batches:
        assert idx.shape == (batch_size,) and idx.dtype == torch.long
        assert ((idx >= 0) & (idx < len(labels))).all()
        counts = torch.bincount(labels[idx], minlength=4)
        assert (counts >= per_class).all(), counts


def test_a_label_share_is_distinct_items_when_the_label_has_enough() -> None:
    labels = skewed_labels()
    for idx in epoch(labels, 20, seed=1):  # a share of 5 per label; every label has at least 7 items
        for k in range(4):
            assert len(idx[labels[idx] == k].unique()) >= 5


def test_a_label_with_fewer_items_than_its_share_is_cycled_to_fill_the_batch() -> None:
    labels = torch.tensor([0] * 30 + [1] * 2)  # label 1 has 2 items, its share of a batch of 10 is 5
    for idx in epoch(labels, 10, seed=0):
        assert idx.shape == (10,)
        assert (labels[idx] == 1).sum() >= 5


def test_same_seed_same_batches_and_different_seed_different_batches() -> None:
    labels = skewed_labels()
    a, b, c = epoch(labels, 12, seed=5), epoch(labels, 12, seed=5), epoch(labels, 12, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_small_label_set_gives_one_batch() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1])
    batches = epoch(labels, 3, seed=0)
    assert len(batches) == 1
    assert sorted(labels[batches[0]].tolist()) == [0, 1, 2]


def test_batch_smaller_than_the_number_of_labels_is_rejected() -> None:
    with pytest.raises(ValueError, match="smaller than the number of labels"):
        epoch(torch.arange(5), 4, seed=0)
