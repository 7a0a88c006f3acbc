"""Hallucination (docs/METHOD.md, Hallucination): shapes, labels, sources, ω ranges, quotas, strategies,
seeds, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch

from models.data import ImageSet
from models.geometry import lerp, normalize, slerp
from models.hallucination import ORDINAL_OMEGA, RESTYLE_OMEGA, SAME_OMEGA, HallucinatedSample, hallucinate, plan_draws, quotas
from models.networks import SemanticAutoencoder
from models.order_circle import sector_centres

ModelFactory = Callable[..., SemanticAutoencoder]
"""The ``make_model`` fixture of conftest.py."""


@pytest.fixture(scope="module")
def few_shot(mnist_500: ImageSet) -> ImageSet:
    """Three real digits of each label except 5 (none, so that only ordinal slerps can make a 5)."""
    return mnist_500.subset([i for i in range(500) if i % 50 < 3 and i // 50 != 5])


def run(model: SemanticAutoencoder, data: ImageSet, **kwargs: object) -> list[HallucinatedSample]:
    return hallucinate(model, data.images, data.labels, data.num_labels, **kwargs).samples  # type: ignore[arg-type]


def check_sample(s: HallucinatedSample, data: ImageSet) -> str:
    """Assert a sample's invariants; return the kind of slerp that made it."""
    assert s.image.shape == (1, 28, 28) and s.image.dtype == torch.float32
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert isinstance(s.label, int) and isinstance(s.omega, float)
    i, j = s.sources
    yi, yj = int(data.labels[i]), int(data.labels[j])
    if yi == yj == s.label:
        assert i != j  # every label here has three examples to pair up
        assert SAME_OMEGA[0] <= s.omega <= SAME_OMEGA[1]
        return "same"
    assert (yi, yj) == (s.label - 1, s.label + 1)
    assert ORDINAL_OMEGA[0] <= s.omega <= ORDINAL_OMEGA[1]
    return "ordinal"


def test_per_class_quota_with_both_strategies(make_model: ModelFactory, few_shot: ImageSet) -> None:
    samples = run(make_model(), few_shot, per_class=4, strategy="both", seed=0)
    assert len(samples) == 40
    assert Counter(s.label for s in samples) == dict.fromkeys(range(10), 4)
    kinds = {k: Counter(check_sample(s, few_shot) for s in samples if s.label == k) for k in range(10)}
    assert kinds[0] == {"same": 4} and kinds[9] == {"same": 4}  # no label below 0 or above 9
    assert kinds[5] == {"ordinal": 4}  # no 5 in the set: filled from 4 -> 6
    assert kinds[4] == kinds[6] == {"same": 4}  # a neighbour (5) is missing
    for k in (1, 2, 3, 7, 8):
        assert kinds[k] == {"ordinal": 2, "same": 2}  # half each


def test_same_strategy_keeps_labels_and_fills_only_empty_labels_ordinally(make_model: ModelFactory, few_shot: ImageSet) -> None:
    samples = run(make_model(), few_shot, per_class=3, strategy="same", seed=1)
    for s in samples:
        assert check_sample(s, few_shot) == ("ordinal" if s.label == 5 else "same")


def test_ordinal_strategy_uses_neighbours_where_it_can(make_model: ModelFactory, few_shot: ImageSet) -> None:
    samples = run(make_model(), few_shot, per_class=2, strategy="ordinal", seed=2)
    for s in samples:
        # 0 and 9 lack a neighbour label, 4 and 6 lack the 5: those fall back to same-label slerps.
        assert check_sample(s, few_shot) == ("same" if s.label in (0, 4, 6, 9) else "ordinal")


def ordered_model(make_model: ModelFactory, style_angle: float = 0.6) -> SemanticAutoencoder:
    """An untrained atnl-like model: ordinal head, sector decoder, fixed lean off the order circle."""
    return make_model(num_labels=10, ordinal_head=True, sector_decoder=True, style_angle=style_angle)


def test_restyle_keeps_the_label_example_s_order_angle_and_takes_a_donor_s_style(
    make_model: ModelFactory, few_shot: ImageSet
) -> None:
    model = ordered_model(make_model)
    samples = run(model, few_shot, per_class=6, strategy="restyle", seed=3, filter="none")
    # 5 has no examples to restyle: it is filled from 4 -> 6 as in ``ordinal``.
    assert Counter(s.label for s in samples) == dict.fromkeys(range(10), 6)
    donors = set()
    with torch.no_grad():
        codes = model.code(few_shot.images)
        for s in samples:
            i, j = s.sources
            if s.label == 5:
                assert check_sample(s, few_shot) == "ordinal"
                continue
            assert int(few_shot.labels[i]) == s.label and i != j
            assert RESTYLE_OMEGA[0] <= s.omega <= RESTYLE_OMEGA[1]
            donors.add(int(few_shot.labels[j]))
            # Slow restatement: the centre of i's given label's sector, i's lean, a style between i's and j's.
            si, sj = normalize(codes[i, 2:]), normalize(codes[j, 2:])
            theta = torch.arccos((si @ sj).clamp(-1, 1))
            style = (torch.sin((1 - s.omega) * theta) * si + torch.sin(s.omega * theta) * sj) / torch.sin(theta)
            phi = sector_centres(10, model.cfg.circle_span)[s.label]
            plane = codes[i, :2].norm() * torch.stack([torch.cos(phi), torch.sin(phi)])
            z = torch.cat([plane, style * codes[i, 2:].norm()])[None]
            torch.testing.assert_close(z.norm(dim=1), torch.ones(1), atol=1e-5, rtol=0)
            torch.testing.assert_close(s.image, model.decode(z)[0], atol=1e-5, rtol=0)
    assert len(donors) > 3  # styles come from examples of many labels


def test_mixed_takes_a_third_from_restyle_and_the_rest_as_both(few_shot: ImageSet) -> None:
    draws = plan_draws(few_shot.labels, 10, [6] * 10, "mixed", torch.Generator().manual_seed(0))
    kinds = {k: Counter("restyle" if j.restyle else "ordinal" if j.i != j.j and few_shot.labels[j.i] != k else "same"
                        for j in draws if j.label == k) for k in range(10)}  # fmt: skip
    for k in (1, 2, 3, 7, 8):
        assert kinds[k] == {"restyle": 2, "ordinal": 2, "same": 2}
    assert kinds[0] == kinds[4] == {"restyle": 2, "same": 4}  # no ordinal neighbours on both sides
    assert kinds[5] == {"ordinal": 6}  # no 5 to restyle


def test_restyle_needs_a_model_with_an_order_circle(make_model: ModelFactory, few_shot: ImageSet) -> None:
    for model in (make_model(), make_model(spherical=False)):
        with pytest.raises(ValueError, match="needs a model with an order circle"):
            run(model, few_shot, per_class=1, strategy="restyle")


@pytest.mark.parametrize(
    ("n", "expected"), [(23, [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]), (10, [1] * 10), (4, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])]
)
def test_n_is_split_evenly_over_labels(make_model: ModelFactory, few_shot: ImageSet, n: int, expected: list[int]) -> None:
    assert quotas(10, None, n) == expected
    samples = run(make_model(), few_shot, n=n, seed=0)
    assert len(samples) == n
    counts = Counter(s.label for s in samples)
    assert [counts.get(k, 0) for k in range(10)] == expected


@pytest.mark.parametrize("spherical", [True, False])
def test_each_image_is_the_decoded_interpolation_of_its_sources(
    make_model: ModelFactory, few_shot: ImageSet, spherical: bool
) -> None:
    model = make_model(spherical=spherical)
    samples = run(model, few_shot, per_class=1, seed=4)
    interpolator = slerp if spherical else lerp  # Euclidean baselines lerp their codes
    with torch.no_grad():
        codes = model.code(few_shot.images)
        for s in samples[:5]:
            i, j = s.sources
            expected = model.decode(interpolator(codes[i], codes[j], [s.omega]))[0]
            torch.testing.assert_close(s.image, expected, atol=1e-6, rtol=0)


def test_same_seed_same_images_and_different_seed_different_images(make_model: ModelFactory, few_shot: ImageSet) -> None:
    model = make_model()
    a, b = run(model, few_shot, per_class=2, seed=7), run(model, few_shot, per_class=2, seed=7)
    c = run(model, few_shot, per_class=2, seed=8)
    assert [(s.label, s.sources, s.omega) for s in a] == [(s.label, s.sources, s.omega) for s in b]
    assert all(torch.equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert [(s.sources, s.omega) for s in a] != [(s.sources, s.omega) for s in c]
    assert not all(torch.equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_hallucinating_from_a_trained_checkpoint(tiny_checkpoint, mnist_5k: ImageSet) -> None:
    from models import load_checkpoint

    model = load_checkpoint(tiny_checkpoint)
    idx = torch.tensor([0, 1, 2, 500, 501, 502, 1000, 1001])
    data = mnist_5k.subset(idx)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]  # mnist-5k is ordered by label
    samples = hallucinate(model, data.images, data.labels, 3, per_class=3, seed=0, filter="none").samples
    assert [s.label for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(check_sample(s, data) in ("same", "ordinal") for s in samples)
    assert all(s.read is not None and 0 <= s.read < 10 for s in samples)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"per_class": 2, "n": 5}, "exactly one of per_class and n"),
        ({}, "exactly one of per_class and n"),
        ({"per_class": 0}, "per_class must be >= 1"),
        ({"n": 0}, "n must be >= 1"),
        ({"per_class": 1, "strategy": "random"}, "strategy must be one of"),
    ],
)
def test_bad_requests_raise_value_errors(
    make_model: ModelFactory, few_shot: ImageSet, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        run(make_model(), few_shot, **kwargs)


def test_bad_inputs_raise_value_errors(make_model: ModelFactory, few_shot: ImageSet) -> None:
    model = make_model()
    x, y = few_shot.images, few_shot.labels
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\) and labels \(N,\)"):
        hallucinate(model, x[:, 0], y, 10, per_class=1)
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\) and labels \(N,\)"):
        hallucinate(model, x, y[:-1], 10, per_class=1)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\)"):
        hallucinate(model, x, y, 9, per_class=1)
    with pytest.raises(ValueError, match="no examples to hallucinate from"):
        hallucinate(model, x[:0], y[:0], 10, per_class=1)


def test_only_labels_with_examples_or_both_neighbours_are_made(make_model: ModelFactory, few_shot: ImageSet) -> None:
    model = make_model()
    x, y = few_shot.images, few_shot.labels
    no_zeros = y != 0  # label 0 has no examples and no label below it to interpolate from: skipped
    samples = hallucinate(model, x[no_zeros], y[no_zeros], 10, per_class=2, seed=0).samples
    assert Counter(s.label for s in samples) == {k: 2 for k in range(1, 10)}
    zeros_and_twos = (y == 0) | (y == 2)  # 1 lies between them and is filled by ordinal slerps
    for strategy, made in (("both", {0, 1, 2}), ("same", {0, 2})):
        samples = hallucinate(model, x[zeros_and_twos], y[zeros_and_twos], 10, per_class=3, strategy=strategy, seed=0).samples
        assert Counter(s.label for s in samples) == {k: 3 for k in made}
