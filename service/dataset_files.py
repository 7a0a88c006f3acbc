"""What the members of an uploaded data set become (service.dataset_store): each image decoded
within the service's caps and stored again in a canonical mode, label names checked, the data
set's id and name."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from service.archive_members import ARCHIVE_FIELD
from service.errors import InvalidInput, ServiceError
from service.imaging import ImageCaps, open_image

MAX_LABEL_CHARS = 128
NAME_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")
"""Characters dropped from an archive's file name to make the data set's name."""


def new_dataset_id() -> str:
    """``ds-<UTC time>-<random>``: sorts by creation time, unique across processes."""
    return f"ds-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def dataset_name(filename: str | None) -> str:
    """The archive's file name without folders or odd characters, at most 128 characters."""
    base = re.split(r"[/\\]", filename or "")[-1]
    return NAME_CHARS.sub("_", base).strip(" ._")[:128] or "archive"


def check_labels(names: list[str]) -> None:
    for name in names:
        if len(name) > MAX_LABEL_CHARS or not name.isprintable() or name != name.strip():
            raise InvalidInput(
                f"archive: label {name[:40]!r} must be printable, without spaces around it, and at most "
                f"{MAX_LABEL_CHARS} characters",
                field=ARCHIVE_FIELD,
            )


def canonical_image(img: Image.Image) -> tuple[Image.Image, bool]:
    """(image as stored, whether it is in colour): grey as "L", colour as "RGB"; transparency is
    flattened onto white, and an RGB image whose three channels agree is grey."""
    if img.mode == "F":  # 16- and 32-bit integer images, scaled to [0, 1] by open_image
        return Image.fromarray((np.clip(np.asarray(img), 0, 1) * 255 + 0.5).astype(np.uint8), mode="L"), False
    if img.mode in ("LA", "RGBA"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    if img.mode == "L":
        return img, False
    rgb = np.asarray(img.convert("RGB"))  # (H, W, 3)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L"), False
    return img.convert("RGB"), True


def decode_member(path: Path, member: str, caps: ImageCaps) -> Image.Image:
    """Decode one image of the archive within ``caps``; a refusal names the member (field ``archive``)."""
    try:
        return open_image(path.read_bytes(), caps, f"archive member {member!r}")
    except ServiceError as e:
        raise type(e)(e.detail, field=ARCHIVE_FIELD) from e
