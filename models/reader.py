"""The label reader: a small CNN trained on real images only, saved with an atnl model.

Hallucination's self-check (``models.hallucination``) asks it, beside the order head, which
label each image it made shows. The order head is trained to read the decoder's restyled
images (the consistency term), so it reads a blurred half-8 between a 7 and a 9 as an 8; the
reader is fitted after the autoencoder, on the real training images alone, and nothing ever
trains the decoder against it, so the decoder cannot learn to please it.
"""

from __future__ import annotations

import torch
from torch import nn

READER_POOLED = 7
"""Side of the feature map before the classifier, whatever the image size (adaptive pooling;
a 28×28 image's own after two 2× poolings)."""


class LabelReader(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, K) label logits, any H, W >= 4: LeNet-like 5×5 convolutions,
    unlike the benchmarks' 3×3 judge (models.judge), so the two do not share their blind spots."""

    def __init__(self, channels: int, num_labels: int, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, w, H/2, W/2)
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, 2w, H/4, W/4)
            nn.AdaptiveAvgPool2d(READER_POOLED),  # (N, 2w, 7, 7)
            nn.Flatten(), nn.Dropout(0.3),
            nn.Linear(2 * width * READER_POOLED**2, hidden), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(hidden, num_labels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) softmax of the logits."""
        return torch.softmax(self(x), dim=1)
