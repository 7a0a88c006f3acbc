"""Geometry of the unit sphere: normalize, slerp (its edge cases, as models/geometry.py states them), lerp, interpolate."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.errors import InputError
from models.geometry import EPS_ANTIPODAL, EPS_PARALLEL, angular_distance, interpolate, latent_path, lerp, normalize, slerp

DIMS = st.integers(min_value=2, max_value=16)


@st.composite
def unit_vector(draw: st.DrawFn, d: int) -> torch.Tensor:
    """A float64 unit vector (d,) drawn from a non-degenerate box."""
    xs = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=d, max_size=d).filter(lambda v: math.hypot(*v) > 0.1))
    return normalize(torch.tensor(xs, dtype=torch.float64))


@st.composite
def unit_pair(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    d = draw(DIMS)
    return draw(unit_vector(d)), draw(unit_vector(d))


@st.composite
def unit_pair_at_angle(draw: st.DrawFn, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(z1, z2, Ω) with θ(z1, z2) = Ω drawn from [lo, hi], built exactly in the plane of z1 and a random direction."""
    d = draw(DIMS)
    z1 = draw(unit_vector(d))
    v = draw(unit_vector(d))
    u = v - (v @ z1) * z1
    if u.norm() < 1e-3:  # v (nearly) parallel to z1: take any orthogonal axis instead
        u = torch.zeros_like(z1)
        u[int(z1.abs().argmin())] = 1.0
        u = u - (u @ z1) * z1
    u = normalize(u)
    omega = draw(st.floats(lo, hi))
    return z1, math.cos(omega) * z1 + math.sin(omega) * u, omega


def assert_unit(z: torch.Tensor, atol: float = 1e-9) -> None:
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(z.shape[:-1], dtype=z.dtype), atol=atol, rtol=0)


def assert_constant_speed(path: torch.Tensor, total: float, atol: float) -> None:
    """Consecutive frames of ``path`` (T, d) are total/(T-1) radians apart."""
    steps = angular_distance(path[:-1], path[1:])
    torch.testing.assert_close(steps, torch.full_like(steps, total / (len(path) - 1)), atol=atol, rtol=0)


# --- normalize -------------------------------------------------------------------------------


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=16).filter(lambda v: math.hypot(*v) > 1e-3))
def test_normalize_gives_unit_vectors_in_the_same_direction(xs: list[float]) -> None:
    z = torch.tensor(xs, dtype=torch.float64)
    n = normalize(z)
    assert_unit(n)
    torch.testing.assert_close(n * z.norm(), z)


def test_normalize_works_along_the_last_axis_of_a_batch() -> None:
    z = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(0))
    n = normalize(z)
    assert n.shape == (5, 3, 7)
    assert_unit(n, atol=1e-6)


def test_normalize_keeps_a_zero_vector_finite() -> None:
    n = normalize(torch.zeros(2, 4))
    assert torch.isfinite(n).all() and (n == 0).all()


def test_angular_distance_of_known_vectors() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert angular_distance(e1, e1).item() == pytest.approx(0.0, abs=1e-6)
    assert angular_distance(e1, e2).item() == pytest.approx(math.pi / 2)
    assert angular_distance(e1, -e1).item() == pytest.approx(math.pi)


# --- slerp -----------------------------------------------------------------------------------


@given(unit_pair(), st.integers(min_value=2, max_value=20))
def test_slerp_endpoints_unit_norm_and_constant_speed(pair: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
    z1, z2 = pair
    omega = angular_distance(z1, z2).item()
    path = slerp(z1, z2, steps)
    assert path.shape == (steps, z1.shape[0])
    assert_unit(path)
    torch.testing.assert_close(path[0], z1, atol=1e-9, rtol=0)
    # In the antipodal band the chosen great circle ends within EPS_ANTIPODAL of z2 (models.geometry.slerp).
    end_tol = 3 * EPS_ANTIPODAL if omega > math.pi - EPS_ANTIPODAL else 1e-9
    torch.testing.assert_close(path[-1], z2, atol=end_tol, rtol=0)
    assert_constant_speed(path, omega, atol=1e-6)


# Up to 2·EPS_ANTIPODAL short of π: at exactly π - EPS_ANTIPODAL the measured angle falls on
# either side of the band edge by rounding, and inside the band slerp ends only near z2.
@given(unit_pair_at_angle(EPS_PARALLEL, math.pi - 2 * EPS_ANTIPODAL), st.floats(0.0, 1.0))
def test_slerp_at_omega_is_omega_of_the_way_along_the_great_circle(
    case: tuple[torch.Tensor, torch.Tensor, float], w: float
) -> None:
    z1, z2, omega = case
    (z,) = slerp(z1, z2, [w])
    assert angular_distance(z1, z).item() == pytest.approx(w * omega, abs=1e-6)
    assert angular_distance(z, z2).item() == pytest.approx((1 - w) * omega, abs=1e-6)


@given(unit_pair_at_angle(math.pi / 2 + 0.01, math.pi - 2 * EPS_ANTIPODAL))
def test_slerp_never_negates_an_endpoint_on_obtuse_angles(case: tuple[torch.Tensor, torch.Tensor, float]) -> None:
    # The quaternion trick (negate z2 when z1·z2 < 0) would end at -z2 and take a path of π - Ω.
    z1, z2, omega = case
    path = slerp(z1, z2, 9)
    torch.testing.assert_close(path[-1], z2, atol=1e-9, rtol=0)
    assert_constant_speed(path, omega, atol=1e-6)


@given(unit_pair_at_angle(0.0, EPS_PARALLEL), st.integers(min_value=2, max_value=12))
def test_slerp_of_near_parallel_vectors_is_finite_unit_and_between_them(
    case: tuple[torch.Tensor, torch.Tensor, float], steps: int
) -> None:
    z1, z2, omega = case
    path = slerp(z1, z2, steps)
    assert torch.isfinite(path).all()
    assert_unit(path)
    torch.testing.assert_close(path[0], z1, atol=1e-12, rtol=0)
    torch.testing.assert_close(path[-1], z2, atol=1e-12, rtol=0)
    # Every frame lies between the endpoints: no frame is farther from either than they are apart.
    assert (angular_distance(path, z1) <= omega + 1e-7).all()
    assert (angular_distance(path, z2) <= omega + 1e-7).all()


def test_slerp_of_identical_vectors_repeats_the_vector() -> None:
    z = normalize(torch.tensor([0.3, -0.4, 0.5]))
    path = slerp(z, z.clone(), 5)
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, z.expand(5, 3))


@given(st.integers(min_value=2, max_value=16).flatmap(unit_vector), st.floats(0.0, EPS_ANTIPODAL / 2), st.integers(3, 15))
def test_slerp_of_antipodal_vectors_takes_a_deterministic_half_great_circle(z1: torch.Tensor, delta: float, steps: int) -> None:
    # z2 exactly or nearly -z1: every great circle through z1 reaches it; one is picked deterministically.
    z2 = normalize(-z1 + delta * torch.roll(z1, 1))
    path = slerp(z1, z2, steps)
    assert torch.isfinite(path).all()
    assert_unit(path)
    torch.testing.assert_close(path[0], z1, atol=1e-12, rtol=0)
    torch.testing.assert_close(path[-1], z2, atol=3 * EPS_ANTIPODAL, rtol=0)
    assert_constant_speed(path, angular_distance(z1, z2).item(), atol=1e-6)
    assert torch.equal(path, slerp(z1.clone(), z2.clone(), steps))
    # The midpoint is a quarter turn from both ends (a real great circle, not a collapse through 0).
    mid = slerp(z1, z2, [0.5])[0]
    assert angular_distance(mid, z1).item() == pytest.approx(math.pi / 2, abs=1e-3)


def test_slerp_of_exactly_antipodal_float32_vectors() -> None:
    z1 = normalize(torch.tensor([1.0, 2.0, -2.0, 0.5]))
    path = slerp(z1, -z1, 7)
    assert torch.isfinite(path).all()
    assert_unit(path, atol=1e-6)
    torch.testing.assert_close(path[-1], -z1, atol=1e-3, rtol=0)  # float32 reads Ω as π - 3.5e-4
    assert_constant_speed(path, math.pi, atol=1e-3)


def test_slerp_accepts_int_list_and_tensor_omegas() -> None:
    z1, z2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    by_int = slerp(z1, z2, 3)
    torch.testing.assert_close(by_int, slerp(z1, z2, [0.0, 0.5, 1.0]))
    torch.testing.assert_close(by_int, slerp(z1, z2, torch.tensor([0.0, 0.5, 1.0])))
    s = math.sqrt(0.5)
    torch.testing.assert_close(by_int[1], torch.tensor([s, s, 0.0]))
    assert slerp(z1, z2, 1).shape == (1, 3)


@pytest.mark.parametrize("fn", [slerp, lerp])
def test_interpolators_reject_bad_shapes_and_step_counts(fn) -> None:
    z = torch.tensor([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="expects two"):
        fn(z, torch.tensor([1.0, 0.0]), 3)
    with pytest.raises(ValueError, match="expects two"):
        fn(z[None], z[None], 3)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fn(z, z, 0)


# --- lerp and interpolate --------------------------------------------------------------------


@given(unit_pair(), st.floats(0.0, 1.0))
def test_lerp_is_the_straight_line_and_renormalize_projects_it(pair: tuple[torch.Tensor, torch.Tensor], w: float) -> None:
    z1, z2 = pair
    (z,) = lerp(z1, z2, [w])
    torch.testing.assert_close(z, (1 - w) * z1 + w * z2)
    (zn,) = lerp(z1, z2, [w], renormalize=True)
    if z.norm() > 1e-6:
        torch.testing.assert_close(zn, z / z.norm())


def test_lerp_leaves_the_sphere_between_its_endpoints() -> None:
    z1, z2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = lerp(z1, z2, 5)
    torch.testing.assert_close(path[0], z1)
    torch.testing.assert_close(path[-1], z2)
    assert path[2].norm().item() == pytest.approx(math.sqrt(0.5))


def test_interpolate_dispatches_by_name() -> None:
    z1, z2 = normalize(torch.tensor([1.0, 2.0, 3.0])), normalize(torch.tensor([-1.0, 0.5, 2.0]))
    assert torch.equal(interpolate(z1, z2, 6), slerp(z1, z2, 6))
    assert torch.equal(interpolate(z1, z2, 6, "slerp"), slerp(z1, z2, 6))
    assert torch.equal(interpolate(z1, z2, 6, "lerp"), lerp(z1, z2, 6))


@pytest.mark.parametrize("method", ["nlerp", "SLERP", ""])
def test_interpolate_rejects_unknown_methods(method: str) -> None:
    z = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="unknown interpolation method"):
        interpolate(z, z, 3, method)


def test_latent_path_keeps_the_sphere_for_spherical_codes_and_the_scale_for_euclidean_ones() -> None:
    g = torch.Generator().manual_seed(0)
    u, v = normalize(torch.randn(6, generator=g)), normalize(torch.randn(6, generator=g))
    assert torch.equal(latent_path(u, v, 5, "slerp", spherical=True), slerp(u, v, 5))
    assert torch.equal(latent_path(u, v, 5, "lerp", spherical=True), lerp(u, v, 5))
    a, b = 2.0 * u, 4.0 * v  # Euclidean codes of lengths 2 and 4
    assert torch.equal(latent_path(a, b, 5, "lerp", spherical=False), lerp(a, b, 5))
    path = latent_path(a, b, 5, "slerp", spherical=False)  # direction slerped, length lerped (White, 2016)
    assert torch.allclose(path.norm(dim=1), torch.tensor([2.0, 2.5, 3.0, 3.5, 4.0]))
    assert torch.allclose(normalize(path), slerp(u, v, 5), atol=1e-6)
    with pytest.raises(InputError, match="unknown interpolation method"):
        latent_path(a, b, 5, "cubic", spherical=False)
