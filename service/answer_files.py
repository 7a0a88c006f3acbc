"""Image bytes out: the PNG, GIF and zip answers built from (H, W) or (C, H, W) float arrays in [0, 1]
(in: service.imaging). No torch."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) float in [0, 1] -> (H, W) or (H, W, C) uint8."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode one (H, W) or (C, H, W) image in [0, 1] as PNG."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


def png_strip(images: Sequence[np.ndarray]) -> bytes:
    """The images, each (H, W) or (C, H, W) of one shape, side by side, left to right, as one PNG."""
    return png_bytes(np.concatenate([np.asarray(im, dtype=np.float32) for im in images], axis=-1))  # joined along W


def gif_bytes(images: Sequence[np.ndarray], frame_ms: int) -> bytes:
    """An animated GIF that plays the images in order, looping forever."""
    frames = [Image.fromarray(to_uint8(im)) for im in images]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


class ZipRow(NamedTuple):
    """One hallucinated image's line of ``labels.csv``."""

    label: str
    sources: tuple[int, int]
    omega: float
    read: str | None
    """The label the model reads in it (None: a model that cannot read labels)."""


def zip_bytes(pngs: Sequence[bytes], rows: Sequence[ZipRow], disagreements: Sequence[tuple[int, str, str, float]]) -> bytes:
    """A zip of ``images/NNNNN.png``, ``labels.csv`` (file, label, source_i, source_j, omega, read),
    one row per PNG, and ``disagreements.csv`` (file, given, read, confidence): the uploads the
    model reads as another label than the one given (``file`` is the upload's index)."""
    names = [f"images/{k:05d}.png" for k in range(len(pngs))]
    labels = [
        [name, r.label, r.sources[0], r.sources[1], f"{r.omega:.6f}", r.read or ""] for name, r in zip(names, rows, strict=True)
    ]
    given = [[index, label, read, f"{confidence:.4f}"] for index, label, read, confidence in disagreements]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, png in zip(names, pngs, strict=True):
            zf.writestr(name, png)
        zf.writestr("labels.csv", csv_text(["file", "label", "source_i", "source_j", "omega", "read"], labels))
        zf.writestr("disagreements.csv", csv_text(["file", "given", "read", "confidence"], given))
    return buf.getvalue()


def csv_text(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
