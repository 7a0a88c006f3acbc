"""The in-memory data set every loader returns (``ImageSet``) and the error a bad one raises.

Kept apart from the loaders (``models.data``, ``models.photo_sets``) so that both can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from models.errors import InputError


class DatasetError(InputError):
    """A data set spec that cannot be read (unknown name, missing or bad files)."""


@dataclass
class ImageSet:
    spec: str
    images: torch.Tensor
    """(N, C, H, W) float32 in [0, 1], C = 1 (grey: digits have ink bright on a dark
    background) or 3 (colour)."""
    labels: torch.Tensor
    """(N,) int64 ordinal label index in [0, K)."""
    label_names: list[str]
    """K names in label order."""
    label_safe_rotation: float = 10.0
    """Degrees of random rotation that keep every label (0 where the label is a pose angle)."""
    preprocess: str = "digits"
    """How a picture is brought to this set's form (``models.preprocess``); a model trained on
    the set records it and prepares requests the same way."""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    @property
    def counts(self) -> dict[str, int]:
        """Images of each label, in label order."""
        found = torch.bincount(self.labels, minlength=self.num_labels).tolist()
        return dict(zip(self.label_names, found, strict=True))

    @property
    def image_shape(self) -> list[int]:
        """[C, H, W] of every image."""
        return list(self.images.shape[1:])
