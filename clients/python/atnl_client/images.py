"""Images in and out of the client.

In: what a caller holds (file paths, PNG/JPEG bytes, PIL images, numpy arrays) becomes
multipart parts (file bytes as given; arrays and PIL images as PNG) or, when every input is
an array, one N×C×H×W array for the binary tensor path. Out: the server's PNGs (base64 in
JSON, or bytes) and npy arrays become PIL images or N×C×H×W float32 arrays in [0, 1].
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | Image.Image | npt.NDArray[Any]
"""One image: a file path, PNG/JPEG bytes, a PIL image, or an array (H×W, H×W×C, or N×C×H×W images)."""
Images: TypeAlias = ImageInput | Sequence[ImageInput]
Part: TypeAlias = tuple[str, bytes, str]
"""A multipart file: (file name, bytes, media type)."""
Array: TypeAlias = npt.NDArray[Any]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
CHANNELS = (1, 3, 4)
"""Channels an image array may have: grey, RGB, RGBA."""
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
"""PIL modes PNG stores as they are; others are converted to RGB first."""


def media_type(data: bytes) -> tuple[str, str]:
    """(file extension, media type) told by the first bytes (the server reads the bytes, not the name)."""
    if data.startswith(PNG_MAGIC):
        return ".png", "image/png"
    if data.startswith(JPEG_MAGIC):
        return ".jpg", "image/jpeg"
    return "", "application/octet-stream"


def to_uint8(image: Array) -> npt.NDArray[np.uint8]:
    """(C, H, W) float in [0, 1] -> (H, W) or (H, W, C) uint8, rounded as the server rounds its PNGs."""
    arr = np.asarray(image, dtype=np.float32)
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def nchw(array: Array) -> Array:
    """An image array as (N, C, H, W), uint8 (0..255) or float32 (0..1): H×W is one grey image, H×W×C
    one image of C channels (1, 3 or 4), N×C×H×W a batch. ValueError for any other shape or dtype."""
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3 and array.shape[-1] in CHANNELS:
        array = np.moveaxis(array, -1, 0)[None]
    elif array.ndim != 4 or array.shape[1] not in CHANNELS:
        raise ValueError(
            "an image array is H×W, H×W×C or N×C×H×W with C in 1, 3 or 4; "
            f"got shape {'×'.join(map(str, array.shape)) or 'scalar'}"
        )
    if min(array.shape) < 1:
        raise ValueError(f"an image array has no empty axis; got shape {'×'.join(map(str, array.shape))}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        floats = np.asarray(array, dtype=np.float32)
        if not np.isfinite(floats).all() or floats.min() < 0.0 or floats.max() > 1.0:
            raise ValueError("a float image array holds finite values in [0, 1]")
        return np.ascontiguousarray(floats)
    raise ValueError(f"an image array is uint8 (0..255) or float (0..1), not {array.dtype}")


def png_of_array(image: Array) -> bytes:
    """One (C, H, W) image, uint8 or float in [0, 1], as PNG bytes."""
    pixels = to_uint8(image.astype(np.float32) / 255.0) if image.dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_of_pil(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    (image if image.mode in PNG_MODES else image.convert("RGB")).save(buf, format="PNG")
    return buf.getvalue()


def picture(item: ImageInput, index: int) -> Part | Array:
    """One input as the file it is (a Part) or an (N, C, H, W) array; TypeError for anything else."""
    if isinstance(item, np.ndarray):
        return nchw(item)
    if isinstance(item, Image.Image):
        return f"image{index}.png", png_of_pil(item), "image/png"
    if isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        extension, media = media_type(data)
        return f"image{index}{extension}", data, media
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        data = path.read_bytes()
        return path.name, data, media_type(data)[1]
    raise TypeError(f"an image is a path, bytes, a PIL image or a numpy array, not {type(item).__name__}")


@dataclass(frozen=True)
class ImageBatch:
    """The images of one request, in order: file bytes as given, or (n, C, H, W) arrays."""

    pictures: tuple[Part | Array, ...]

    @classmethod
    def of(cls, images: Images) -> ImageBatch:
        """One image, or a list or tuple of them (an N×C×H×W array counts as N)."""
        items: list[Any] = list(images) if isinstance(images, list | tuple) else [images]
        if not items:
            raise ValueError("no images given")
        return cls(tuple(picture(item, i) for i, item in enumerate(items)))

    @property
    def count(self) -> int:
        return sum(1 if isinstance(p, tuple) else len(p) for p in self.pictures)

    def array(self) -> Array | None:
        """Every image as one (N, C, H, W) array, uint8 if all are, else float32 in [0, 1]; None when
        an input is a file or PIL image, or the arrays differ in shape."""
        arrays = [p for p in self.pictures if isinstance(p, np.ndarray)]
        if len(arrays) != len(self.pictures) or len({a.shape[1:] for a in arrays}) != 1:
            return None
        if all(a.dtype == np.uint8 for a in arrays):
            return np.concatenate(arrays)
        return np.concatenate([a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a for a in arrays])

    def parts(self, field: str) -> list[tuple[str, Part]]:
        """Multipart ``files`` entries, one per image, all named ``field``; arrays as PNG."""
        out: list[tuple[str, Part]] = []
        for p in self.pictures:
            if isinstance(p, tuple):
                out.append((field, p))
            else:
                out += [(field, (f"image{len(out) + k}.png", png_of_array(image), "image/png")) for k, image in enumerate(p)]
        return out

    def one(self, field: str) -> tuple[str, Part]:
        """The one multipart entry of a single-image field (interpolate's start and end)."""
        if self.count != 1:
            raise ValueError(f"{field}: one image, got {self.count}")
        return self.parts(field)[0]


def pil_of_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pil_of_base64(png: str) -> Image.Image:
    return pil_of_png(base64.b64decode(png))


def pils_of_array(images: Array) -> list[Image.Image]:
    """(N, C, H, W) float in [0, 1] -> N PIL images (grey or RGB), the pixels the server's PNGs hold."""
    return [Image.fromarray(to_uint8(image)) for image in images]


def array_of_pils(images: Sequence[Image.Image]) -> npt.NDArray[np.float32]:
    """PIL images of one shape -> (N, C, H, W) float32 in [0, 1]."""
    arrays = [np.asarray(image, dtype=np.float32) / 255.0 for image in images]
    return np.stack([a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0) for a in arrays]).astype(np.float32)


def npy_bytes(array: Array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_of_npy(data: bytes) -> Array:
    """The one array of an .npy body (never unpickled)."""
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
