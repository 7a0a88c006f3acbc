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


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header that declares ``width`` x ``height`` grey pixels, with almost no data:
    what a decompression bomb looks like before it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def big_digit_png(image: np.ndarray, side: int, mode: str = "RGBA") -> bytes:
    """A ``side`` x ``side`` PNG of the digit drawn large, dark ink on a transparent (RGBA) or
    white background: small on disk (flat areas compress), huge once decoded."""
    ink = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((side // 3, side // 3), Image.Resampling.NEAREST)
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(ink, (side // 3, side // 3))
    alpha = np.asarray(canvas)
    if mode == "RGBA":
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[..., 3] = alpha  # black ink where the digit is, transparent elsewhere
        img = Image.fromarray(rgba, "RGBA")
    else:
        img = Image.fromarray(255 - alpha).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def mpo_of(image: np.ndarray) -> bytes:
    """A multi-picture JPEG (MPO, as phones write): the digit as the first picture, a second one behind."""
    first = Image.fromarray((255 - np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((280, 280)).convert("RGB")
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    return buf.getvalue()


def noisy_png_of(image: np.ndarray, side: int = 1000, seed: int = 0) -> bytes:
    """A ``side`` x ``side`` RGB scan of the digit with sensor noise: over 1 MB as PNG, so the
    server spools it to disk and reads it back in a thread."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((side, side)), np.float32)
    paper = 230.0 - 0.8 * ink
    rgb = np.clip(paper[..., None] + rng.integers(-8, 9, (side, side, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()
