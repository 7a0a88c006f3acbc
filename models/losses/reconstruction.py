"""Reconstruction loss: every family's term for drawing its input back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel mean binary cross-entropy of decoder logits (N, C, H, W) against x in [0, 1]
    of the same shape. Returns a scalar."""
    return F.binary_cross_entropy_with_logits(logits, x)
