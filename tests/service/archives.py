"""Real archive bytes for the data set tests: zips and tar.gz files of tiny PNGs, well-formed or hostile,
and a colour data set whose labels show (a bar's angle) for the tests that train on one."""

from __future__ import annotations

import gzip
import io
import math
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from service.settings import Settings

Members = Sequence[tuple[str, bytes]]
BAR_STEP = 45.0
"""Degrees between the bars of two neighbouring labels in ``bar_picture`` (label k: k·BAR_STEP)."""


def tiny_png(seed: int, mode: str = "L", size: tuple[int, int] = (12, 12)) -> bytes:
    """A ``size`` (width, height) PNG of seeded noise in ``mode`` (L, RGB, RGBA; RGB channels differ)."""
    rng = np.random.default_rng(seed)
    w, h = size
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 128
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def labelled(labels: Sequence[str], per_label: int = 2, prefix: str = "", mode: str = "L") -> list[tuple[str, bytes]]:
    """``<prefix><label>/<k>.png`` members: one folder per label."""
    return [(f"{prefix}{label}/{k}.png", tiny_png(31 * i + k, mode)) for i, label in enumerate(labels) for k in range(per_label)]


def zip_of(members: Members, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members`` (name, bytes), names kept as given (duplicates included)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name: some tests want one
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in members:
                z.writestr(zipfile.ZipInfo(name) if name.endswith("/") else name, data)
    return buf.getvalue()


def zip_with_info(info: zipfile.ZipInfo, data: bytes, others: Members = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in others:
            z.writestr(name, blob)
        z.writestr(info, data)
    return buf.getvalue()


def zip_symlink(name: str, target: str) -> bytes:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode bits below count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_with_info(info, target.encode(), labelled(["1", "2", "3"]))


def patch_zip_headers(data: bytes, name: str, *, flag_bits: int | None = None, file_size: int | None = None) -> bytes:
    """``data`` with member ``name``'s general-purpose flags or uncompressed size rewritten in both
    its local header and its central directory record (what a forged archive carries)."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, flags_at, size_at, name_len_at, header_len in ((b"PK\x03\x04", 6, 22, 26, 30), (b"PK\x01\x02", 8, 24, 28, 46)):
        at = out.find(signature)
        while at >= 0:
            (name_len,) = struct.unpack_from("<H", out, at + name_len_at)
            if bytes(out[at + header_len : at + header_len + name_len]) == encoded:
                if flag_bits is not None:
                    struct.pack_into("<H", out, at + flags_at, flag_bits)
                if file_size is not None:
                    struct.pack_into("<L", out, at + size_at, file_size)
            at = out.find(signature, at + 4)
    return bytes(out)


def tar_gz_of(members: Members, special: Sequence[tarfile.TarInfo] = ()) -> bytes:
    """A tar.gz of ``members`` (regular files), then the ``special`` headers (links, devices, ...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in special:
            t.addfile(info)
    return buf.getvalue()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data)


def bar_picture(k: int, rng: np.random.Generator, side: int = 24) -> Image.Image:
    """A ``side`` x ``side`` RGB picture of label ``k``: a bar through the centre at k·BAR_STEP
    degrees (counter-clockwise), the label to see; its colour and the background's, drawn from
    ``rng``, are the style (the bar's colour is the background's complement: always visible)."""
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    img = Image.new("RGB", (side, side), background)
    angle, reach, centre = math.radians(k * BAR_STEP), side * 0.42, side / 2
    dx, dy = reach * math.cos(angle), reach * math.sin(angle)
    ImageDraw.Draw(img).line(
        [(centre - dx, centre + dy), (centre + dx, centre - dy)], fill=tuple(255 - v for v in background), width=3
    )
    return img


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95)
    return buf.getvalue()


def bar_members(labels: Sequence[str], per_label: int, side: int = 24, seed: int = 0) -> list[tuple[str, bytes]]:
    """``<label>/<i>.png`` and ``<label>/<i>.jpg`` members, alternately: ``per_label`` bar
    pictures (``bar_picture``) of each label, label k's bar at k·BAR_STEP."""
    rng = np.random.default_rng(seed)
    members = []
    for k, label in enumerate(labels):
        for i in range(per_label):
            fmt = ("PNG", "JPEG")[i % 2]
            members.append((f"{label}/{i}.{fmt.lower().replace('jpeg', 'jpg')}", encoded(bar_picture(k, rng, side), fmt)))
    return members


def empty_store_settings(tmp_path: Path, redis_url: str, **caps: Any) -> Settings:
    """Settings of an empty model store (no model is trained, none bootstrapped), with ``caps`` over the defaults."""
    return Settings(
        model_store=tmp_path / "store",
        redis_url=redis_url,
        device="cpu",
        bootstrap_default_model=False,
        _env_file=None,  # type: ignore[call-arg]
        **caps,
    )
