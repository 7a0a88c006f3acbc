"""Image bytes in: decoding PNG/JPEG within caps, MNIST-style preprocessing (out: service.answer_files).

Arrays here are numpy float32 in [0, 1], ink bright on a dark background (the
training distribution of every data set in ``models.data``). No torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.errors import BadImage, PayloadTooLarge

ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO")
"""MPO is the multi-picture JPEG phones write; its first picture is the photo."""
FIT_FRACTION = 20 / 28
"""Share of the canvas side the ink's bounding box is fitted into (MNIST: 20 of 28 pixels)."""
INK_THRESHOLD = 0.25
"""After contrast stretching, values below this are paper, not ink (removes paper grain and JPEG noise)."""
BACKGROUND_PERCENTILE = 50
"""Paper level: the median, since ink covers well under half of a digit photo."""
INK_PERCENTILE = 99.5
"""Ink level: the darkest ink, robust to a few outlier pixels."""
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
        # Decode at a reduced DCT scale (1/2, 1/4 or 1/8): far cheaper and smaller.
        img.draft("L", (max(1, w * WORK_SIDE // max(w, h)), max(1, h * WORK_SIDE // max(w, h))))
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


def to_grey(img: Image.Image) -> np.ndarray:
    """(H, W) float32 luminance in [0, 1]; transparency is flattened onto the colour
    that contrasts with the visible pixels (dark ink on transparent -> white paper)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
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
        raise BadImage("no ink found: the image is (nearly) uniform")
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


def load_image(data: bytes, size: int, preprocess: bool, caps: ImageCaps, field: str = "image") -> np.ndarray:
    """PNG/JPEG bytes -> (size, size) float32 in [0, 1], ink bright on dark.

    ``preprocess=False`` only converts to grey and resizes: for images already in
    the training distribution. Errors name ``field``."""
    grey = to_grey(open_image(data, caps, field))
    if preprocess:
        try:
            return mnist_style(grey, size)
        except BadImage as e:
            raise BadImage(f"{field}: {e.detail}", field=field) from e
    if grey.shape != (size, size):
        grey = np.clip(resize(grey, size, size), 0.0, 1.0)
    return grey
