"""Built-in data sets made from data that installed packages ship, and archives of any ImageSet.

- ``pose-photos``: colour tiles cut from the real photographs bundled with scikit-image and
  scikit-learn, each framed like an instant print and tilted into one of the PHOTO_POSE_ANGLES
  bins (label = bin, a stand-in for Multi-PIE's pose order; the photo and crop are the style);
- ``digits-8x8``: scikit-learn's 1,797 real 8×8 handwritten digits.

Nothing is downloaded: the files are read straight from the installed packages (no
``import sklearn.datasets``, which alone takes seconds). ``write_archive`` writes any
ImageSet as an upload in the folder layout ``models.layout`` reads.
"""

from __future__ import annotations

import importlib.util
import io
import math
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.errors import InputError
from models.image_set import DatasetError, ImageSet
from models.layout import LABELS_TXT, ignored

PHOTO_SIZE = 48
"""Side of the square colour pose-photos images, in pixels."""

PHOTO_POSE_ANGLES = (-60, -45, -30, -15, 0, 15, 30, 45, 60)
"""Degrees of the pose-photos bins, counter-clockwise on screen, in label order: Multi-PIE's
15° steps, which an independent small CNN tells apart every time (``load_pose_photos``)."""

PHOTO_PER_BIN = 400
"""pose-photos images of each bin (3,600 in all)."""

PHOTO_JITTER = 2.0
"""Largest deviation of a tile's tilt from its bin's angle, in degrees (±)."""

PRINT_WINDOW = (22.0, 26.0)
"""Width and height of the photo inside each tile, in output pixels (portrait)."""

PRINT_BORDER = (2.0, 2.0, 6.0)
"""White border of the tile at its sides, top and bottom, in output pixels. The thick bottom,
like an instant print's, tells up from down; a bare square tile would look the same at -60°
and +30°."""

PHOTO_BACKGROUND = 0.4
"""Grey level of the canvas around the tile."""

CROP_FRACTION = (0.3, 0.7)
"""Range of a crop's height as a fraction of its photo's shorter side (the zoom of the style)."""

PHOTO_WORKING_SIDE = 72
"""Shorter side, in pixels, each photo is area-reduced to before cropping: a crop (22 to 50
pixels high) then maps onto the window's 26 at 0.8 to 1.9 photo pixels a step, so bilinear
sampling neither skips detail (aliasing) nor blurs much; rendering at twice the size and
averaging down looked the same and took three times as long."""

SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
"""Colour photographs inside scikit-image's ``skimage/data`` (those that load with no network)."""

SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
"""Colour photographs inside scikit-learn's ``sklearn/datasets/images``."""

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Timestamp of every zip member (the format's earliest), so the same data gives the same bytes."""

ArchiveFormat = Literal["zip", "tar.gz"]


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"this data set needs the {package} package installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise DatasetError(f"{package} is installed but {path} is missing")
    return path


def photo_paths() -> list[Path]:
    """The bundled colour photographs pose-photos is cut from, in a fixed order."""
    return [package_file("skimage", "data", name) for name in SKIMAGE_PHOTOS] + [
        package_file("sklearn", "datasets", "images", name) for name in SKLEARN_PHOTOS
    ]


def read_photo(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], area-reduced so that min(H, W) = PHOTO_WORKING_SIDE."""
    with Image.open(path) as im:
        rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    scale = PHOTO_WORKING_SIDE / min(rgb.shape[1:])
    size = (round(rgb.shape[1] * scale), round(rgb.shape[2] * scale))
    return F.interpolate(rgb[None], size=size, mode="area")[0]


def random_crops(photo_shape: tuple[int, int], n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random crops of an (H, W) photo, as the map from a tile's window to the photo: centres
    (n, 2) as (x, y) in photo pixels, and scales (n, 2) in photo pixels per tile pixel (x
    negative for a mirrored crop)."""
    h, w = photo_shape
    crop_h = min(h, w) * (CROP_FRACTION[0] + (CROP_FRACTION[1] - CROP_FRACTION[0]) * torch.rand(n, generator=g))
    crop_w = crop_h * PRINT_WINDOW[0] / PRINT_WINDOW[1]
    cx = crop_w / 2 + torch.rand(n, generator=g) * (w - crop_w)
    cy = crop_h / 2 + torch.rand(n, generator=g) * (h - crop_h)
    mirror = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    per_pixel = crop_h / PRINT_WINDOW[1]
    return torch.stack([cx, cy], 1), torch.stack([per_pixel * mirror, per_pixel], 1)


def print_coordinates(angles: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) affine maps from canvas positions ([-1, 1] units, y down, as affine_grid takes
    them) to positions on the print tilted by (n,) degrees counter-clockwise on screen, in output
    pixels from the centre of the print's photo window."""
    rad = angles.float() * math.pi / 180
    cos, sin = torch.cos(rad) * PHOTO_SIZE / 2, torch.sin(rad) * PHOTO_SIZE / 2
    # The print's centre is the canvas centre; its window sits higher by half the border difference.
    shift = torch.full_like(cos, (PRINT_BORDER[2] - PRINT_BORDER[1]) / 2)
    # A print point (u, v) appears on screen at (u cos + v sin, -u sin + v cos).
    return torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1), torch.stack([sin, cos, shift], 1)], 1)


def coverage(outside_x: torch.Tensor, outside_y: torch.Tensor) -> torch.Tensor:
    """Share of each pixel inside an upright rectangle, from its centre's distances (pixels)
    outside the rectangle's bounds along each axis (negative inside): the signed distance to the
    nearest edge plus one half, clamped to [0, 1], which antialiases the edges."""
    return torch.maximum(outside_x, outside_y).neg_().add_(0.5).clamp_(0, 1)


def render_tiles(photo: torch.Tensor, angles: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(n, 3, PHOTO_SIZE, PHOTO_SIZE) in [0, 1]: random crops of one (3, H, W) photo, framed and
    tilted by (n,) degrees (counter-clockwise on screen), centred on a grey canvas."""
    n = len(angles)
    (win_w, win_h), (side_b, top_b, bottom_b) = PRINT_WINDOW, PRINT_BORDER
    uv = F.affine_grid(print_coordinates(angles), [n, 1, PHOTO_SIZE, PHOTO_SIZE], align_corners=False)  # (n, S, S, 2)
    u, v = uv[..., 0].abs(), uv[..., 1]
    window = coverage(u - win_w / 2, v.abs() - win_h / 2)[:, None]  # (n, 1, S, S)
    paper = coverage(u - win_w / 2 - side_b, (v - (bottom_b - top_b) / 2).abs_() - (win_h + top_b + bottom_b) / 2)[:, None]
    # Print position (u, v) shows photo pixel centre + scale·(u, v); grid_sample wants [-1, 1] units.
    centres, scales = random_crops((photo.shape[1], photo.shape[2]), n, g)
    size = torch.tensor([photo.shape[2], photo.shape[1]], dtype=torch.float32)  # (W, H)
    offset, factor = (2 * centres / size - 1)[:, None, None], (2 * scales / size)[:, None, None]  # (n, 1, 1, 2)
    grid = torch.addcmul(offset, uv, factor)  # (n, S, S, 2)
    content = F.grid_sample(photo.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)
    # White paper around the window, grey canvas around the paper: two lerps, in place.
    canvas = content.sub_(1).mul_(window).add_(1).sub_(PHOTO_BACKGROUND).mul_(paper).add_(PHOTO_BACKGROUND)
    return canvas.clamp_(0, 1)


def load_pose_photos(seed: int = 0) -> ImageSet:
    """PHOTO_PER_BIN colour tiles per PHOTO_POSE_ANGLES bin: images (3600, 3, 48, 48) float32 in
    [0, 1], labels (3600,) the bin index in [0, 9), names "-60deg" .. "+60deg". Each is a random
    crop (CROP_FRACTION of the shorter side, mirrored half the time) of one of the seven bundled
    photographs, framed with a white border thicker at the bottom, tilted by its bin's angle
    ±PHOTO_JITTER and centred on a grey canvas; every photo gives crops to every bin. The same
    seed gives the same images. A small CNN (three 3×3 conv layers, adaptive pooling; 3 epochs
    on a seeded stratified 80/20 split) classified all 720 held-out images right, and all 700
    at 20° steps: unlike pose-digits, whose judge needs 20°, the tiles take Multi-PIE's 15°."""
    g = torch.Generator().manual_seed(seed)
    k, n = len(PHOTO_POSE_ANGLES), PHOTO_PER_BIN * len(PHOTO_POSE_ANGLES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    angles = torch.tensor(PHOTO_POSE_ANGLES, dtype=torch.float32)[labels]
    angles += (torch.rand(n, generator=g) * 2 - 1) * PHOTO_JITTER
    photos = [read_photo(p) for p in photo_paths()]
    source = torch.randperm(n, generator=g) % len(photos)  # balanced over photos, independent of the bin
    images = torch.empty(n, 3, PHOTO_SIZE, PHOTO_SIZE)
    for i, photo in enumerate(photos):
        idx = (source == i).nonzero().squeeze(1)
        images[idx] = render_tiles(photo, angles[idx], g)
    names = [f"{a:+d}deg" if a else "0deg" for a in PHOTO_POSE_ANGLES]
    return ImageSet("pose-photos", images, labels, names, label_safe_rotation=0.0, preprocess="fit")


def load_sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 real handwritten digits (the UCI optdigits test set): images
    (1797, 1, 8, 8) float32 in [0, 1] (the 0..16 counts over 16), ink bright on dark; labels
    (1797,) int64 digit in [0, 10), names "0".."9". The same arrays as
    ``sklearn.datasets.load_digits()``, read from its file without importing sklearn."""
    raw = np.loadtxt(package_file("sklearn", "datasets", "data", "digits.csv.gz"), delimiter=",", dtype=np.float32)
    if raw.ndim != 2 or raw.shape[1] != 65:
        raise DatasetError(f"sklearn's digits.csv.gz has shape {raw.shape}, expected (1797, 65)")
    images = torch.from_numpy(raw[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(raw[:, 64].astype(np.int64))
    return ImageSet("digits-8x8", images.contiguous(), labels, [str(d) for d in range(10)])


def png_bytes(image: torch.Tensor) -> bytes:
    """One (1, H, W) or (3, H, W) image in [0, 1] as PNG bytes, mode "L" or "RGB"."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        im = Image.fromarray(pixels[0].numpy())  # (H, W) uint8: mode "L"
    elif pixels.shape[0] == 3:
        im = Image.fromarray(pixels.permute(1, 2, 0).numpy())  # (H, W, 3) uint8: mode "RGB"
    else:
        raise InputError(f"images must have 1 or 3 channels to be written as PNG, got {pixels.shape[0]}")
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def archive_members(data: ImageSet) -> list[tuple[str, bytes]]:
    """(name, bytes) of every archive member: labels.txt, then ``<label>/<label>_<i>.png`` in label order."""
    for name in data.label_names:
        if not name or ignored(Path(name)) or "/" in name or "\\" in name or name != name.strip():
            raise InputError(f"label {name!r} cannot be a folder name in an archive", field="labels")
    if data.images.ndim != 4 or len(data.images) != len(data.labels):
        raise InputError(f"images must be (N, C, H, W) with N = {len(data.labels)} labels, got {tuple(data.images.shape)}")
    members = [(LABELS_TXT, "".join(f"{name}\n" for name in data.label_names).encode())]
    width = len(str(max(len(data) - 1, 0)))
    for k, name in enumerate(data.label_names):
        for i, index in enumerate((data.labels == k).nonzero().squeeze(1).tolist()):
            members.append((f"{name}/{name}_{i:0{width}d}.png", png_bytes(data.images[index])))
    return members


def write_archive(data: ImageSet, path: Path, fmt: ArchiveFormat = "zip") -> Path:
    """Write ``data`` to ``path`` as an upload in the folder layout ``models.layout`` reads: one
    folder per label named after it, one PNG per image (mode "L" for 1 channel, "RGB" for 3,
    pixels = round(255·x)), and labels.txt giving the label order. Returns ``path``."""
    if fmt not in ("zip", "tar.gz"):
        raise InputError(f"archive format must be 'zip' or 'tar.gz', got {fmt!r}", field="fmt")
    members = archive_members(data)
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
            for name, body in members:
                zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), body)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, body in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(body), 0o644
                tf.addfile(info, io.BytesIO(body))
    return path
