"""Affine image warps, and traditional augmentation: small random affine jitter."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter(
    x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, shift: float = 0.1, scale: float = 0.1
) -> torch.Tensor:
    """Small random affine jitter of (N, C, H, W) images: rotation ±degrees,
    translation ±shift of the half-width, scale 1±scale. The "traditional
    augmentation" of the few-shot benchmark uses it too."""
    n = x.shape[0]
    a = (torch.rand(n, generator=generator) * 2 - 1) * degrees * torch.pi / 180
    s = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    return warp(x, theta.to(x.device, x.dtype))


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images resampled by (N, 2, 3) affine maps in affine_grid units
    (output position -> input position), bilinear, zeros outside."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
