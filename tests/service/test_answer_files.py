"""service.answer_files: the PNG, strip and GIF answers of grey and colour frames, pixel for pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.answer_files import gif_bytes, png_bytes, png_strip


def frames(shape: tuple[int, ...], count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random(shape, dtype=np.float32) for _ in range(count)]


def as_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) in [0, 1] -> what a PNG of it holds: (H, W) or (H, W, 3) uint8."""
    pixels = (image * 255 + 0.5).astype(np.uint8)
    return pixels if pixels.ndim == 2 else pixels[0] if len(pixels) == 1 else np.moveaxis(pixels, 0, -1)


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(("shape", "mode"), [((12, 10), "L"), ((1, 12, 10), "L"), ((3, 12, 10), "RGB")])
def test_a_strip_holds_the_frames_left_to_right(shape: tuple[int, ...], mode: str) -> None:
    images = frames(shape)
    strip = decoded(png_strip(images))
    assert (strip.mode, strip.size) == (mode, (4 * 10, 12))
    for k, image in enumerate(images):
        assert np.array_equal(np.asarray(strip)[:, 10 * k : 10 * (k + 1)], as_pixels(image))
        assert np.array_equal(np.asarray(decoded(png_bytes(image))), as_pixels(image))


@pytest.mark.parametrize("shape", [(12, 10), (3, 12, 10)])
def test_a_gif_plays_every_frame(shape: tuple[int, ...]) -> None:
    gif = decoded(gif_bytes(frames(shape), 50))
    assert gif.format == "GIF" and gif.size == (10, 12) and gif.n_frames == 4
