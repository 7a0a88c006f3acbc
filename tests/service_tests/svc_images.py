"""Real image bytes for the service tests: MNIST-style PNGs and large RGB JPEG photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_of(image: np.ndarray) -> bytes:
    """(28, 28) float in [0, 1], white ink on black (as MNIST) -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def photo_jpeg_of(image: np.ndarray, seed: int = 0, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A large RGB JPEG 'photo': the digit as dark ink on off-white paper, off-centre, noisy."""
    rng = np.random.default_rng(seed)
    w, h = size
    side = h // 3
    ink = (
        np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC), np.float32)
        / 255
    )
    paper = np.full((h, w), 0.9, np.float32) + np.linspace(-0.04, 0.04, w, dtype=np.float32)[None, :]
    top, left = h // 5, w // 2 + w // 10
    paper[top : top + side, left : left + side] -= 0.8 * ink
    paper += rng.normal(0, 0.015, paper.shape).astype(np.float32)
    rgb = np.stack([paper * 0.98, paper * 0.95, paper * 0.88], axis=-1)
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue()
