"""Euclidean triplet loss: the VAE-TL baseline's term on the encoder means."""

from __future__ import annotations

import torch


def euclidean_triplet_loss(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Standard batch-all triplet loss on codes z (B, d) with labels (B,): same label positive,
    other labels negative, ``margin`` in units of Euclidean distance. Returns a scalar (0 with
    the graph kept when the batch has no valid triplet)."""
    d = torch.cdist(z, z)  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]  # (B, B, B) indexed [a, p, n]
    loss = torch.relu(d[:, :, None] - d[:, None, :] + margin)
    return loss[valid].mean() if valid.any() else z.sum() * 0.0
