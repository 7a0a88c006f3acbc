"""LabelFreeStyleLoss and its MMD, recomputed with explicit loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.geometry import normalize
from models.losses import LabelFreeStyleLoss
from models.losses.label_free_style import KERNEL_SCALES, mmd2


def _slow_mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    def k(u: torch.Tensor, v: torch.Tensor) -> float:
        d2 = float(((u - v) ** 2).sum())
        return sum(c / (c + d2) for c in KERNEL_SCALES)

    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return aa + bb - 2 * ab


@pytest.mark.parametrize("seed", [0, 1])
def test_mmd2_matches_an_explicit_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g) + 0.5
    assert mmd2(a, b).item() == pytest.approx(_slow_mmd2(a, b), rel=1e-5, abs=1e-6)


def test_label_dependent_styles_cost_more_than_label_free_ones() -> None:
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(10)  # (100,)
    free = torch.randn(100, 14)  # every label spread over the whole style sphere
    clustered = normalize(torch.randn(10, 14))[labels] + 0.05 * torch.randn(100, 14)  # one style a label
    loss = LabelFreeStyleLoss(prior_samples=200)
    torch.manual_seed(1)
    free_loss = loss(free, labels).item()
    torch.manual_seed(1)
    clustered_loss = loss(clustered, labels).item()
    assert clustered_loss > 0.5 and abs(free_loss) < 0.1 * clustered_loss


def test_label_free_style_loss_reads_directions_only_and_keeps_the_graph() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2])  # label 2 has one item: skipped
    style = torch.randn(5, 6, requires_grad=True)
    loss = LabelFreeStyleLoss()
    torch.manual_seed(3)
    a = loss(style, labels)
    torch.manual_seed(3)
    b = loss(style * 7.0, labels)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    a.backward()
    assert style.grad is not None and style.grad[:4].abs().sum() > 0 and style.grad[4].abs().sum() == 0


def test_label_free_style_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="expected style"):
        LabelFreeStyleLoss()(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="prior_samples"):
        LabelFreeStyleLoss(prior_samples=1)


def test_label_free_style_loss_is_the_mean_of_each_labels_mmd2() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # label 3 has one item: skipped
    style = torch.randn(10, 5)
    torch.manual_seed(7)
    got = LabelFreeStyleLoss(prior_samples=30)(style, labels)
    torch.manual_seed(7)
    prior = normalize(torch.randn(30, 5))
    want = torch.stack([mmd2(normalize(style[labels == k]), prior) for k in (0, 1, 2)]).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
