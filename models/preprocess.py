"""Bringing a decoded picture to a model's input: the preprocessings a model records.

Every model's checkpoint names one (``ModelConfig.preprocess``); requests use the model's
own unless they say otherwise, and training applies the same one to its data set:

- ``digits``: MNIST's recipe for ink on paper: grey, light paper inverted, cropped to
  the ink, the ink's box fitted into 20/28 of the side, centred by mass;
- ``fit``: centre crop to a square, resized to the side, colour kept (photos, poses, ...);
- ``none``: resized only (images already in the model's form).

Arrays are numpy float32 in [0, 1]; a prepared image is (C, side, side). Numpy and
Pillow only: the service's request path (``service.imaging``) imports it without torch.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image

from models.errors import InputError

Preprocess = Literal["digits", "fit", "none"]
PREPROCESSINGS: tuple[str, ...] = get_args(Preprocess)
FIT_FRACTION = 20 / 28
"""Share of the canvas side the ink's bounding box is fitted into (MNIST: 20 of 28 pixels)."""
INK_THRESHOLD = 0.25
"""After contrast stretching, values below this are paper, not ink (removes paper grain and JPEG noise)."""
BACKGROUND_PERCENTILE = 50
"""Paper level: the median, since ink covers well under half of a digit photo."""
INK_PERCENTILE = 99.5
"""Ink level: the darkest ink, robust to a few outlier pixels."""
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R 601 weights of R, G, B in grey (as Pillow's ``convert("L")``)."""
COLOUR_TOLERANCE = 2 / 255
"""An RGB picture whose channels differ by no more than this everywhere is grey."""


def to_grey(img: Image.Image) -> np.ndarray:
    """(H, W) float32 luminance in [0, 1]; transparency is flattened onto the colour
    that contrasts with the visible pixels (dark ink on transparent -> white paper)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        grey = rgba[..., :3] @ LUMA
        alpha = rgba[..., 3]
        visible = alpha > 0.5
        ink_is_dark = float(grey[visible].mean()) < 0.5 if visible.any() else True
        paper = 1.0 if ink_is_dark else 0.0
        return np.asarray(grey * alpha + paper * (1 - alpha), dtype=np.float32)
    if img.mode == "F":  # 16- and 32-bit integer images, already scaled to [0, 1] by open_image
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def resize(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample (H, W) float to (height, width) with an anti-aliasing filter."""
    img = Image.fromarray(grey.astype(np.float32), mode="F")
    return np.asarray(
        img.resize((width, height), Image.Resampling.LANCZOS if min(grey.shape) > 1 else Image.Resampling.NEAREST),
        dtype=np.float32,
    )


def mnist_style(grey: np.ndarray, size: int = 28) -> np.ndarray:
    """Bring any digit image to the MNIST distribution, (size, size) in [0, 1].

    Light background -> inverted; contrast stretched between paper and ink
    level; cropped to the ink; the longer side fitted to FIT_FRACTION of the
    canvas (aspect kept); placed so the centre of mass is at pixel (size/2, size/2)
    (where mnist-5k has it: 13.99, 14.00),
    as LeCun et al. made MNIST."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if float(np.median(border)) > 0.5:
        grey = 1.0 - grey
    lo = float(np.percentile(grey, BACKGROUND_PERCENTILE))
    hi = float(np.percentile(grey, INK_PERCENTILE))
    if hi - lo < 0.05:
        raise InputError("no ink found: the image is (nearly) uniform")
    x = np.clip((grey - lo) / (hi - lo), 0.0, 1.0)
    x[x < INK_THRESHOLD] = 0.0
    rows, cols = np.nonzero(x)
    x = x[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    box = round(size * FIT_FRACTION)
    h, w = x.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = np.clip(resize(x, nw, nh), 0.0, 1.0)
    if x.max() > 0:
        x = x / x.max()  # thin strokes lose peak intensity when shrunk a lot
    canvas = np.zeros((size, size), dtype=np.float32)
    total = x.sum()
    cy = (x.sum(axis=1) @ np.arange(nh)) / total
    cx = (x.sum(axis=0) @ np.arange(nw)) / total
    top = round(size / 2 - cy)
    left = round(size / 2 - cx)
    top = min(max(top, 0), size - nh)
    left = min(max(left, 0), size - nw)
    canvas[top : top + nh, left : left + nw] = x
    return canvas


def requested(asked: str, own: str) -> str:
    """The preprocessing a request's ``preprocess`` names, for a model that records ``own``:
    ``model`` is the model's own and ``mnist`` (the old name) is ``digits``."""
    return {"model": own, "mnist": "digits"}.get(asked, asked)


def to_rgb(img: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; transparency is flattened onto white."""
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        alpha = rgba[..., 3:]
        return np.asarray(rgba[..., :3] * alpha + (1 - alpha), dtype=np.float32)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def is_colour(img: Image.Image) -> bool:
    """Whether ``img`` has colour: an RGB(A)/palette picture whose channels differ somewhere."""
    if img.mode in ("L", "LA", "F", "1", "I") or img.mode.startswith("I;16"):
        return False
    rgb = to_rgb(img)
    return bool(np.abs(rgb - rgb[..., :1]).max() > COLOUR_TOLERANCE)


def resize_rgb(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, C) float -> (side, side, C), each channel resampled with an anti-aliasing filter."""
    return np.stack([resize(rgb[..., c], side, side) for c in range(rgb.shape[2])], axis=2)


def centre_square(rgb: np.ndarray) -> np.ndarray:
    """The largest centred square of an (H, W, C) array."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top : top + s, left : left + s]


def prepare(img: Image.Image, how: str, side: int, channels: int) -> np.ndarray:
    """A decoded picture -> (channels, side, side) float32 in [0, 1] by the preprocessing ``how``
    (``PREPROCESSINGS``); InputError for an unknown one or (``digits``) a picture with no ink."""
    if how == "digits":
        grey = mnist_style(to_grey(img), side)[None]  # (1, side, side)
        return np.repeat(grey, channels, axis=0)
    if how not in PREPROCESSINGS:
        raise InputError(f"unknown preprocessing {how!r}; expected one of {list(PREPROCESSINGS)}", field="preprocess")
    if channels == 1:
        grey = to_grey(img) if how == "none" else centre_square(to_grey(img)[..., None])[..., 0]
        if grey.shape != (side, side):
            grey = resize(grey, side, side)
        return np.clip(grey, 0, 1)[None]
    rgb = to_rgb(img)
    if how == "fit":
        rgb = centre_square(rgb)
    if rgb.shape[:2] != (side, side):
        rgb = resize_rgb(rgb, side)
    return np.ascontiguousarray(np.clip(rgb, 0, 1).transpose(2, 0, 1), dtype=np.float32)
