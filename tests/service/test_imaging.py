"""Image decoding (service/imaging.py), in process: real photos preprocessed into MNIST digits, a
big PNG decoded in bounded memory, and Hypothesis on the decoding path: random bytes, real images
of every mode, size and format, then truncated, bit-flipped or with a forged header. Whatever comes
in, ``load_image`` gives a (1, 28, 28) array in [0, 1] or raises BadImage / PayloadTooLarge: never
another exception, and within a bounded time (docs/API.md §3, §4)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import BadImage, PayloadTooLarge
from service.imaging import ImageCaps, decoded_bytes, load_image
from tests.service.images import big_digit_png, photo_jpeg_of

ROOT = Path(__file__).resolve().parents[2]

BOUND_FILLERS = ImageCaps(max_pixels=4_000_000, max_decoded_bytes=32 * 1024 * 1024)
"""Tighter than the defaults, so forged headers cross them often."""
SECONDS = 5.0
"""Most time one input may take (the largest legal one here decodes in well under a second)."""
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
"""Seeded (derandomize): the same inputs on every run, so a failure reproduces."""

MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "MPO": ["RGB"],
    "GIF": ["L", "P"],
    "BMP": ["RGB"],
    "TIFF": ["F", "I", "RGB"],
    "WEBP": ["RGBA"],
}
"""What Pillow writes, per format: every mode the decoder may meet, and formats it must refuse."""


def check(data: bytes, preprocess: str = "digits") -> None:
    """The property: an image in range, or one of the two refusals; nothing else, in time."""
    start = time.perf_counter()
    try:
        decoded_bytes(data, BOUND_FILLERS, "files[0]")
        x = load_image(data, 28, preprocess, BOUND_FILLERS, "files[0]")
    except (BadImage, PayloadTooLarge) as e:
        assert e.detail and "files[0]" in e.detail, e.detail
    else:
        assert x.shape == (1, 28, 28) and x.dtype == np.float32
        assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    took = time.perf_counter() - start
    assert took < SECONDS, f"{len(data)} bytes took {took:.1f} s"


ACCEPTED = ("PNG", "JPEG", "MPO")


@st.composite
def images(draw: st.DrawFn, formats: tuple[str, ...] = (*ACCEPTED, *ACCEPTED, *sorted(MODES))) -> bytes:
    """A real image file: a format (accepted ones drawn more often), a mode, a size; random
    pixels or a drawn stroke."""
    fmt = draw(st.sampled_from(formats))
    mode = draw(st.sampled_from(MODES[fmt]))
    w, h = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        img = Image.fromarray(rng.uniform(0, {"I;16": 65535, "I": 2**20, "F": 1.0}[mode], (h, w)).astype(dtype))
    else:
        pixels = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
        if draw(st.booleans()):  # a dark stroke on light paper, as a scan
            pixels[:] = 230
            pixels[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 2 : w // 2 + max(1, w // 8)] = 20
        img = Image.frombytes(mode, (w, h), pixels.tobytes()) if mode not in ("1", "P") else None
        if img is None:
            img = Image.fromarray(pixels[..., 0], "L").convert(mode)
    if mode == "P" and draw(st.booleans()):
        img.info["transparency"] = 0
    buf = io.BytesIO()
    kwargs = {"save_all": True, "append_images": [img]} if fmt == "MPO" else {}
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real PNG or JPEG, then truncated, bit-flipped, or both (past its signature, mostly)."""
    data = bytearray(draw(images(ACCEPTED)))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    start = 0 if draw(st.integers(0, 4)) == 0 else min(len(data), 8)
    for _ in range(draw(st.integers(0, 8))):
        if len(data) > start:
            k = draw(st.integers(start, len(data) - 1))
            data[k] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


@st.composite
def forged_png(draw: st.DrawFn) -> bytes:
    """A PNG whose header says anything (size, bit depth, colour type, interlace) over a small,
    possibly short, possibly garbage pixel stream."""
    w, h = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()):
        w, h = w % 4096, h % 4096
    depth, colour = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 32])), draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7]))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, draw(st.integers(0, 2)))
    raw = draw(st.binary(max_size=2048))
    idat = zlib.compress(raw) if draw(st.booleans()) else raw
    plte = [chunk(b"PLTE", draw(st.binary(min_size=3, max_size=96)))] if colour == 3 else []
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(plte) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@st.composite
def forged_jpeg(draw: st.DrawFn) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size and component count."""
    buf = io.BytesIO()
    Image.new("L", (draw(st.integers(1, 64)), draw(st.integers(1, 64))), 128).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    if sof > 0:
        struct.pack_into(">HH", data, sof + 5, draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
        if draw(st.booleans()):
            data[sof + 9] = draw(st.integers(0, 255))  # number of components
    return bytes(data)


@given(st.binary(max_size=4096))
@EXAMPLES
def test_random_bytes(data: bytes) -> None:
    check(data)


@given(images(), st.sampled_from(["digits", "fit", "none"]))
@EXAMPLES
def test_real_images_of_every_mode_size_and_format(data: bytes, preprocess: str) -> None:
    check(data, preprocess)


@given(damaged())
@EXAMPLES
def test_truncated_and_bit_flipped_images(data: bytes) -> None:
    check(data)


@given(forged_png())
@EXAMPLES
def test_forged_png_headers(data: bytes) -> None:
    check(data)


@given(forged_jpeg())
@EXAMPLES
def test_forged_jpeg_headers(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("prefix", [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"RIFF"])
def test_magic_numbers_alone(prefix: bytes) -> None:
    for tail in (b"", b"\0" * 16, b"\xff" * 64):
        check(prefix + tail)


def test_photo_preprocessing_recovers_the_mnist_digit(digits) -> None:
    for k in range(10):
        x = digits[k][1]
        y = load_image(photo_jpeg_of(x, seed=k), 28, preprocess="digits", caps=ImageCaps(10**8, 2**30))[0]
        assert y.shape == (28, 28) and y.min() >= 0 and y.max() <= 1
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.8, k


def test_a_big_png_is_decoded_in_bounded_memory(tmp_path, digits) -> None:
    """A 5000x5000 RGBA PNG (100 MB decoded) once took > 1 GB as float arrays at full size."""
    path = tmp_path / "big.png"
    path.write_bytes(big_digit_png(digits[5][0], 5000))
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from benchmarks.servers import memory_mb
        from service.imaging import ImageCaps, load_image

        # VmHWM: this process's peak RSS (ru_maxrss would carry pytest's over the exec)
        base = memory_mb(os.getpid(), "VmHWM")
        start = time.perf_counter()
        x = load_image(Path({str(path)!r}).read_bytes(), 28, "digits", ImageCaps(40_000_000, 2**30))
        print(x.shape, x.max(), time.perf_counter() - start, memory_mb(os.getpid(), "VmHWM") - base)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    shape, peak_mb = out.stdout.split(")")[0], float(out.stdout.split()[-1])
    print("5000x5000 RGBA PNG:", out.stdout.strip())
    assert shape == "(1, 28, 28"
    assert peak_mb < 350, f"decoding took {peak_mb:.0f} MB above the interpreter's baseline"
