"""arccos for training losses, kept off ±1 where its gradient is infinite."""

from __future__ import annotations

import torch

ARCCOS_EPS = 1e-6
"""How far inside [-1, 1] a cosine is clamped before arccos: its gradient is infinite at ±1."""


def safe_arccos(cos: torch.Tensor) -> torch.Tensor:
    """Angles in radians (any shape) of cosines, clamped to [-1 + ARCCOS_EPS, 1 - ARCCOS_EPS]."""
    return torch.arccos(cos.clamp(-1 + ARCCOS_EPS, 1 - ARCCOS_EPS))
