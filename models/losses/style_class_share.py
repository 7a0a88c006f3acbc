"""Style class share: how much of the style axes' variance the label explains."""

from __future__ import annotations

import torch


def style_class_share(style: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of the style axes' variance explained by the label, in [0, 1].

    Between-class scatter of the per-label means over the total scatter, for
    style (B, d-2) and labels (B,). Driving it to 0 leaves the label to the order
    circle alone: otherwise the decoder reads the digit from the style axes, and a
    path's middle decodes as one endpoint's label instead of the labels in between."""
    centred = style - style.mean(0, keepdim=True)
    total = centred.pow(2).sum(1).mean().clamp_min(1e-8)
    between = style.new_zeros(())
    for k in labels.unique():
        mask = labels == k
        between = between + mask.float().mean() * centred[mask].mean(0).pow(2).sum()
    return between / total
