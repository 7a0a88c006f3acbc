"""ATNL and the ordinal circle loss against slow explicit recomputations."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from models.geometry import normalize
from models.losses import AngularTripletNeighborLoss, OrdinalCircleLoss


def random_batch(b: int, d: int, num_labels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = normalize(torch.randn(b, d, generator=g, dtype=torch.float64))
    labels = torch.randint(num_labels, (b,), generator=g)
    labels[:num_labels] = torch.arange(num_labels)  # every label present
    return z, labels


# --- AngularTripletNeighborLoss ------------------------------------------------------------------


def slow_atnl(
    z: torch.Tensor, labels: torch.Tensor, margin: float, schedule: str, mining: str, max_positive_gap: int | None
) -> tuple[torch.Tensor, int]:
    """The objective (docs/METHOD.md) written out: a Python loop over every ordered triplet (a, p, n) of distinct items."""
    y = labels.tolist()
    terms = []
    for a, p, n in itertools.permutations(range(len(y)), 3):
        s_ap, s_an = abs(y[a] - y[p]), abs(y[a] - y[n])
        if not s_ap < s_an:
            continue
        if max_positive_gap is not None and s_ap > max_positive_gap:
            continue
        m = margin * (s_an - s_ap if schedule == "gap" else 1.0)
        theta_ap = torch.arccos(torch.clamp(z[a] @ z[p], -1.0, 1.0))
        theta_an = torch.arccos(torch.clamp(z[a] @ z[n], -1.0, 1.0))
        if mining == "semihard" and not (theta_ap < theta_an < theta_ap + m):
            continue
        terms.append(torch.clamp(theta_ap - theta_an + m, min=0.0))
    if not terms:
        return z.sum() * 0.0, 0
    return torch.stack(terms).mean(), len(terms)


@pytest.mark.parametrize("schedule", ["gap", "constant"])
@pytest.mark.parametrize("mining", ["all", "semihard"])
@pytest.mark.parametrize("max_positive_gap", [None, 0, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_atnl_matches_an_explicit_loop_over_all_triplets(
    schedule: str, mining: str, max_positive_gap: int | None, seed: int
) -> None:
    z, labels = random_batch(b=9, d=5, num_labels=4, seed=seed)
    margin = 0.4
    loss_fn = AngularTripletNeighborLoss(margin, schedule, mining, max_positive_gap)

    z_fast = z.clone().requires_grad_(True)
    fast = loss_fn(z_fast, labels)
    fast.backward()
    z_slow = z.clone().requires_grad_(True)
    slow, count = slow_atnl(z_slow, labels, margin, schedule, mining, max_positive_gap)
    slow.backward()

    assert count > 0, "the case must exercise some triplets"
    _, valid = loss_fn.triplet_losses(z, labels)
    assert int(valid.sum()) == count
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(z_fast.grad, z_slow.grad, atol=1e-6, rtol=1e-5)


def test_atnl_margin_schedules_differ_only_by_the_gap_factor() -> None:
    # One anchor, a positive at the same angle and label, a negative 3 labels away at the same angle:
    # θ(a,p) = θ(a,n), so the loss is exactly the margin term: m·3 (gap) or m (constant).
    z = normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64))
    labels = torch.tensor([0, 0, 3])
    gap = AngularTripletNeighborLoss(0.2, "gap").triplet_losses(z, labels)[0]
    const = AngularTripletNeighborLoss(0.2, "constant").triplet_losses(z, labels)[0]
    assert gap[0, 1, 2].item() == pytest.approx(0.6, abs=1e-9)
    assert const[0, 1, 2].item() == pytest.approx(0.2, abs=1e-9)


def test_atnl_is_zero_when_the_order_is_met_with_margin() -> None:
    # Labels laid along a great circle, 1 radian per label: every negative is farther by >= 1 rad per gap.
    angles = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    z = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(4, dtype=torch.float64)], 1)
    loss = AngularTripletNeighborLoss(margin=0.5)(z, torch.tensor([0, 1, 2, 3]))
    assert loss.item() == 0.0


@pytest.mark.parametrize("labels", [torch.tensor([3, 3, 3, 3, 3]), torch.tensor([7])])
def test_atnl_of_a_batch_without_triplets_is_zero_and_keeps_the_graph(labels: torch.Tensor) -> None:
    z = normalize(torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    loss = AngularTripletNeighborLoss()(z, labels)
    assert loss.item() == 0.0
    assert loss.requires_grad and loss.grad_fn is not None
    loss.backward()
    assert z.grad is not None and (z.grad == 0).all()


@pytest.mark.parametrize(
    ("z_shape", "labels_shape"),
    [((6,), (6,)), ((6, 4), (5,)), ((6, 4), (6, 1)), ((2, 6, 4), (6,))],
)
def test_atnl_rejects_bad_shapes(z_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected z \(B, d\) and labels \(B,\)"):
        AngularTripletNeighborLoss()(torch.randn(z_shape), torch.zeros(labels_shape, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": -0.1}, "margin must be >= 0"),
        ({"margin_schedule": "linear"}, "margin_schedule"),
        ({"mining": "hard"}, "mining"),
    ],
)
def test_atnl_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AngularTripletNeighborLoss(**kwargs)  # type: ignore[arg-type]


def test_atnl_describe_records_its_exact_form() -> None:
    desc = AngularTripletNeighborLoss(0.25, "constant", "semihard", 2).describe()
    assert desc["name"] == "AngularTripletNeighborLoss"
    assert "theta(a,p) - theta(a,n)" in str(desc["formula"])
    assert (desc["margin_radians"], desc["margin_schedule"], desc["mining"], desc["max_positive_gap"]) == (
        0.25,
        "constant",
        "semihard",
        2,
    )


# --- OrdinalCircleLoss ---------------------------------------------------------------------------


def slow_circle(
    z: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    span: float,
    style_radius: float,
    tau_fraction: float,
    smoothing: float = 0.0,
) -> float:
    """The per-item formula of the module docstring, in plain Python floats (the cross-entropy
    against (1 - smoothing) · one-hot + smoothing / K)."""
    sector = span / num_labels
    tau = sector * tau_fraction
    centres = [(k - (num_labels - 1) / 2) * sector for k in range(num_labels)]
    order = style = 0.0
    for r, y in zip(z.tolist(), labels.tolist(), strict=True):
        psi = math.atan2(r[1], r[0])
        logits = [-((psi - phi) ** 2) / (2 * tau**2) for phi in centres]
        top = max(logits)
        nll = [top + math.log(sum(math.exp(v - top) for v in logits)) - v for v in logits]  # -log p_k
        order += (1 - smoothing) * nll[y] + smoothing * sum(nll) / num_labels  # cross-entropy
        rho = min(math.hypot(r[0], r[1]), 1 - 1e-6)
        style += max(0.0, math.acos(rho) - style_radius) ** 2
    return (order + style) / len(labels)


@pytest.mark.parametrize("tau_fraction", [1 / 3, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_circle_loss_matches_an_explicit_recomputation(tau_fraction: float, seed: int, smoothing: float) -> None:
    z, labels = random_batch(b=12, d=4, num_labels=5, seed=seed)
    z[:, :2] *= 0.3  # some items far off the order circle, so that the style term counts
    z = normalize(z).float()
    loss = OrdinalCircleLoss(5, span=2.5, style_radius=0.3, tau_fraction=tau_fraction, label_smoothing=smoothing)(z, labels)
    assert loss.item() == pytest.approx(slow_circle(z, labels, 5, 2.5, 0.3, tau_fraction, smoothing), rel=1e-5)


def test_circle_loss_prefers_each_label_at_its_own_sector_centre() -> None:
    k = 6
    loss_fn = OrdinalCircleLoss(k, style_radius=0.0)
    phi = loss_fn.centres()
    torch.testing.assert_close(phi[1:] - phi[:-1], torch.full((k - 1,), loss_fn.span / k))
    assert phi.sum().item() == pytest.approx(0.0, abs=1e-6)  # centred on axis 0
    on_centres = torch.stack([torch.cos(phi), torch.sin(phi), torch.zeros(k)], 1)  # on the circle: no style term
    assert torch.equal(loss_fn.sector_logits(on_centres).argmax(1), torch.arange(k))
    right = loss_fn(on_centres, torch.arange(k))
    shifted = loss_fn(on_centres, torch.arange(k).roll(1))
    assert right.item() < 0.1 < shifted.item()


def test_circle_loss_style_term_lets_latents_lean_off_the_circle_up_to_the_radius() -> None:
    loss_fn = OrdinalCircleLoss(2, span=1.0, style_radius=0.5)
    labels = torch.tensor([0])
    phi = float(loss_fn.centres()[0])

    def at(lean: float) -> torch.Tensor:
        return torch.tensor([[math.cos(lean) * math.cos(phi), math.cos(lean) * math.sin(phi), math.sin(lean)]])

    base = loss_fn(at(0.0), labels).item()
    assert loss_fn(at(0.45), labels).item() == pytest.approx(base, abs=1e-6)
    assert loss_fn(at(0.9), labels).item() == pytest.approx(base + 0.4**2, abs=1e-4)


def test_circle_loss_gradient_flows() -> None:
    z, labels = random_batch(b=8, d=5, num_labels=4, seed=3)
    z = z.float().requires_grad_(True)
    OrdinalCircleLoss(4)(z, labels).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_circle_loss_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        OrdinalCircleLoss(1)
    for span in (0.0, math.pi, 4.0):
        with pytest.raises(ValueError, match="span"):
            OrdinalCircleLoss(4, span=span)
    with pytest.raises(ValueError, match="tau_fraction"):
        OrdinalCircleLoss(4, tau_fraction=0.0)
    for smoothing in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            OrdinalCircleLoss(4, label_smoothing=smoothing)
    loss_fn = OrdinalCircleLoss(4)
    with pytest.raises(ValueError, match="d>=3"):
        loss_fn(normalize(torch.randn(5, 2)), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="d>=3"):
        loss_fn(normalize(torch.randn(5, 4)), torch.zeros(4, dtype=torch.long))
