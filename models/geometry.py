"""Geometry of the unit sphere: the one place latents are normalised.

Every other module (the loss, slerp, hallucination, the networks) relies on the
invariant that a latent returned by ``normalize`` has unit L2 norm.
"""

from __future__ import annotations

from typing import Literal

import torch

from models.errors import InputError

EPS_NORM = 1e-8
"""Smallest norm divided by; a zero vector stays (numerically) zero instead of NaN."""

EPS_PARALLEL = 1e-4
"""Below this angle (radians) slerp falls back to normalised lerp (sin Ω ≈ 0)."""

EPS_ANTIPODAL = 1e-4
"""Within this angle of π the great circle is not unique; a deterministic one is chosen.
Widened to a few times sqrt(eps) of the dtype (1.4e-3 rad in float32), the finest
angle from π that arccos can resolve: in float32, u·(-u) rounds to about -1 + 6e-8,
which reads as π - 3.5e-4 and would otherwise cancel the slerp to zero at ω = 0.5."""


def normalize(z: torch.Tensor) -> torch.Tensor:
    """Project ``z`` (..., d) onto the unit sphere S^{d-1} along its last axis."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(EPS_NORM)


def angular_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """θ(u, v) = arccos(clamp(u·v, -1, 1)) in radians, for unit vectors (..., d)."""
    return torch.arccos((u * v).sum(dim=-1).clamp(-1.0, 1.0))


def _orthogonal_direction(z: torch.Tensor) -> torch.Tensor:
    """A deterministic unit vector orthogonal to unit ``z`` (d,): the coordinate
    axis least aligned with ``z``, made orthogonal by one Gram-Schmidt step."""
    axis = torch.zeros_like(z)
    axis[int(z.abs().argmin())] = 1.0
    return normalize(axis - (axis @ z) * z)


def _as_omegas(omegas: torch.Tensor | list[float] | int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(omegas, int):
        if omegas < 1:
            raise InputError(f"steps must be >= 1, got {omegas}")
        return torch.linspace(0.0, 1.0, omegas, dtype=like.dtype, device=like.device)
    return torch.as_tensor(omegas, dtype=like.dtype, device=like.device).reshape(-1)


def slerp(z1: torch.Tensor, z2: torch.Tensor, omegas: torch.Tensor | list[float] | int) -> torch.Tensor:
    """Spherical interpolation between unit vectors ``z1`` and ``z2`` of shape (d,).

    ``omegas``: (T,) values in [0, 1], or an int T for T evenly spaced values with
    both endpoints. Returns (T, d) unit vectors moving at constant angular speed
    along the great circle from z1 (ω=0) to z2 (ω=1).

    Edge cases: for Ω = θ(z1, z2) < EPS_PARALLEL, normalised lerp (sin Ω ≈ 0);
    for Ω within EPS_ANTIPODAL of π, the great circle through z1 and the
    coordinate axis least aligned with z1 (deterministic; no vector is negated).
    """
    if z1.shape != z2.shape or z1.dim() != 1:
        raise InputError(f"slerp expects two (d,) vectors, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    w = _as_omegas(omegas, z1)[:, None]  # (T, 1)
    omega = angular_distance(z1, z2)
    if omega < EPS_PARALLEL:
        return lerp(z1, z2, w[:, 0], renormalize=True)
    if omega > torch.pi - max(EPS_ANTIPODAL, 4 * torch.finfo(z1.dtype).eps ** 0.5):
        u = _orthogonal_direction(z1)
        return normalize(torch.cos(w * omega) * z1 + torch.sin(w * omega) * u)
    s = torch.sin(omega)
    out = torch.sin((1 - w) * omega) / s * z1 + torch.sin(w * omega) / s * z2  # (T, d)
    return normalize(out)  # removes float round-off only; the formula is already unit


def lerp(z1: torch.Tensor, z2: torch.Tensor, omegas: torch.Tensor | list[float] | int, renormalize: bool = False) -> torch.Tensor:
    """Linear interpolation (1-ω)·z1 + ω·z2, (T, d). Leaves the sphere unless
    ``renormalize`` (the ATNL* ablation and the baselines decode it as is)."""
    if z1.shape != z2.shape or z1.dim() != 1:
        raise InputError(f"lerp expects two (d,) vectors, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    w = _as_omegas(omegas, z1)[:, None]
    out = (1 - w) * z1 + w * z2
    return normalize(out) if renormalize else out


Method = Literal["slerp", "lerp"]
"""How a path between two latents is drawn (the CLI's and REST API's ``method``)."""
INTERPOLATORS = {"slerp": slerp, "lerp": lerp}
"""Interpolation methods by the name the CLI and REST API use."""
METHODS: tuple[Method, ...] = ("slerp", "lerp")


def interpolate(
    z1: torch.Tensor, z2: torch.Tensor, omegas: torch.Tensor | list[float] | int, method: str = "slerp"
) -> torch.Tensor:
    """Dispatch to ``slerp`` or ``lerp`` by name; (T, d)."""
    if method not in INTERPOLATORS:
        raise InputError(f"unknown interpolation method {method[:64]!r}; expected one of {list(METHODS)}", field="method")
    return INTERPOLATORS[method](z1, z2, omegas)


def latent_path(
    c1: torch.Tensor, c2: torch.Tensor, omegas: torch.Tensor | list[float] | int, method: str, spherical: bool
) -> torch.Tensor:
    """The path rule every caller uses: (T, d) decoder codes between codes ``c1`` and ``c2`` (d,).

    Spherical models: slerp or lerp of their unit latents (lerp is decoded off the
    sphere, as the paper's ATNL* ablation). Euclidean codes: lerp as is, or for slerp
    the direction slerped and the length lerped (White, 2016), so the path keeps
    the codes' scale."""
    if spherical or method != "slerp":
        return interpolate(c1, c2, omegas, method)
    w = _as_omegas(omegas, c1)
    lengths = (1 - w) * c1.norm() + w * c2.norm()  # (T,)
    return interpolate(normalize(c1), normalize(c2), w, "slerp") * lengths[:, None]


def default_method(spherical: bool) -> Method:
    """slerp on the sphere (ATNL); lerp for Euclidean codes (the baselines' own path)."""
    return "slerp" if spherical else "lerp"
