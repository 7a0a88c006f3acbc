"""Image bytes in: decoding PNG/JPEG within caps, then the model's preprocessing (``models.preprocess``;
out: service.answer_files).

Arrays here are numpy float32 in [0, 1], (C, H, W) in the model's shape.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.errors import InputError
from models.preprocess import prepare
from service.errors import BadImage, PayloadTooLarge

ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO")
"""MPO is the multi-picture JPEG phones write; its first picture is the photo."""
WORK_SIDE = 512
"""Images are decoded (JPEG: at a reduced DCT scale) or shrunk right after decoding (PNG)
to a longer side of at least this many pixels and less than twice it, before any float
work: the ink ends up 20 px tall anyway."""
WORKING_MODES = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}
"""Modes converted right after decoding into one that ``Image.reduce`` and ``to_grey`` handle.
P becomes RGBA (with transparency) or RGB; 16- and 32-bit integer modes become F in [0, 1]."""
KEPT_MODES = ("L", "LA", "RGB", "RGBA", "F")
ORIENTATION_TAG = 0x0112
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose)."""


@dataclass(frozen=True)
class ImageCaps:
    """What one image may cost, checked from its header before decoding (see service.settings)."""

    max_pixels: int
    """Width x height as the header declares (ATNL_MAX_PIXELS)."""
    max_decoded_bytes: int
    """Bytes in memory once decoded and converted to its working mode (ATNL_MAX_DECODED_BYTES)."""


@dataclass(frozen=True)
class ImagePolicy:
    """What one request's pictures may cost, in and out (see service.settings)."""

    image: ImageCaps
    max_request_decoded_bytes: int
    """All of a request's images decoded together (ATNL_MAX_REQUEST_DECODED_BYTES)."""
    gif_frame_ms: int
    """How long each frame of an answered GIF shows (ATNL_GIF_FRAME_MS)."""


def working_mode(img: Image.Image) -> str:
    """The mode ``img`` is converted to right after decoding (see WORKING_MODES)."""
    if img.mode in KEPT_MODES:
        return img.mode
    if img.mode == "P":
        return "RGBA" if "transparency" in img.info else "RGB"
    if img.mode == "I" or img.mode.startswith("I;16"):
        return "F"
    return WORKING_MODES.get(img.mode, "RGB")


def bytes_per_pixel(mode: str) -> int:
    if mode in ("I", "F"):
        return 4
    if mode.startswith("I;16"):
        return 2
    return Image.getmodebands(mode) if mode in Image.MODES else 4


def _open(data: bytes, field: str) -> Image.Image:
    """The image header of ``data``, its format checked; nothing decoded yet."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # Pillow's own ceiling, above ATNL_MAX_PIXELS
        raise PayloadTooLarge(f"{field}: image is far above the pixel limit (ATNL_MAX_PIXELS)", field=field) from e
    except Exception as e:  # Pillow raises many types on hostile headers; every one means "not an image"
        if isinstance(e, Warning):  # DecompressionBombWarning, when warnings are errors
            raise PayloadTooLarge(f"{field}: image is far above the pixel limit (ATNL_MAX_PIXELS)", field=field) from e
        raise BadImage(f"{field}: not a PNG or JPEG image", field=field) from e
    if img.format not in ACCEPTED_FORMATS:
        raise BadImage(f"{field}: image format {img.format} is not accepted; send PNG or JPEG", field=field)
    return img


def _plan(img: Image.Image, caps: ImageCaps, field: str) -> int:
    """Check the header against ``caps`` and set up reduced-scale JPEG decoding; returns the
    bytes decoding will take. Raises PayloadTooLarge before any pixel is decoded."""
    w, h = img.size
    if w * h > caps.max_pixels:
        raise PayloadTooLarge(
            f"{field}: image is {w}x{h} = {w * h} pixels; the limit is {caps.max_pixels} (ATNL_MAX_PIXELS)", field=field
        )
    if img.format in ("JPEG", "MPO") and max(w, h) > WORK_SIDE:
        # Decode at a reduced DCT scale (1/2, 1/4 or 1/8), in its own mode (colour kept): far cheaper and smaller.
        img.draft(img.mode, (max(1, w * WORK_SIDE // max(w, h)), max(1, h * WORK_SIDE // max(w, h))))
    dw, dh = img.size
    need = dw * dh * bytes_per_pixel(img.mode)
    if working_mode(img) != img.mode:
        need += dw * dh * bytes_per_pixel(working_mode(img))
    if need > caps.max_decoded_bytes:
        raise PayloadTooLarge(
            f"{field}: image would take {need} bytes decoded ({dw}x{dh} {img.mode}); "
            f"the limit is {caps.max_decoded_bytes} (ATNL_MAX_DECODED_BYTES)",
            field=field,
        )
    return need


def decoded_bytes(data: bytes, caps: ImageCaps, field: str = "image") -> int:
    """Bytes ``data`` will take once decoded, from its header alone; BadImage or
    PayloadTooLarge for what ``open_image`` would refuse before decoding."""
    return _plan(_open(data, field), caps, field)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block is no reason to refuse the picture
        return 1


def _to_working_mode(img: Image.Image) -> Image.Image:
    mode = working_mode(img)
    if mode == img.mode:
        return img
    if mode == "F" and img.mode != "F":
        top = 65535.0 if img.mode.startswith("I;16") else None
        arr = np.asarray(img, dtype=np.float32)
        top = top or max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / top, 0, 1), mode="F")
    return img.convert(mode)


def open_image(data: bytes, caps: ImageCaps, field: str = "image") -> Image.Image:
    """Decode PNG or JPEG ``data`` within ``caps``, upright (EXIF orientation), in one of
    KEPT_MODES, its longer side shrunk below 2 x WORK_SIDE right after decoding."""
    img = _open(data, field)
    _plan(img, caps, field)
    orientation = _orientation(img)
    try:
        img.load()
        img = _to_working_mode(img)
        factor = max(img.size) // WORK_SIDE
        if factor >= 2:
            img = img.reduce(factor)  # box filter: cheap and anti-aliased
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(f"{field}: image is far above the pixel limit (ATNL_MAX_PIXELS)", field=field) from e
    except Exception as e:  # truncated or corrupt data surfaces here, as OSError, ValueError, SyntaxError, ...
        raise BadImage(f"{field}: image could not be decoded: {type(e).__name__}: {e}", field=field) from e
    if orientation in TRANSPOSE_FOR_ORIENTATION:
        img = img.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
    return img


def load_image(data: bytes, size: int, preprocess: str, caps: ImageCaps, field: str = "image", channels: int = 1) -> np.ndarray:
    """PNG/JPEG bytes -> (channels, size, size) float32 in [0, 1], prepared by ``preprocess``
    (``models.preprocess.PREPROCESSINGS``: ``digits`` gives ink bright on dark). Errors name ``field``."""
    img = open_image(data, caps, field)
    try:
        return prepare(img, preprocess, size, channels)
    except InputError as e:
        raise BadImage(f"{field}: {e}", field=field) from e
