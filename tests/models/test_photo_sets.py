"""The built-in pose-photos and digits-8x8 sets, and write_archive read back by models.layout."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.data import ImageSet
from models.errors import InputError
from models.layout import read_layout
from models.photo_sets import (
    PHOTO_BACKGROUND,
    PHOTO_PER_BIN,
    PHOTO_POSE_ANGLES,
    PHOTO_SIZE,
    load_pose_photos,
    load_sklearn_digits,
    write_archive,
)


@pytest.fixture(scope="module")
def pose() -> ImageSet:
    return load_pose_photos()


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    return load_sklearn_digits()


def test_pose_photos_are_colour_images_in_ordered_balanced_bins(pose: ImageSet) -> None:
    k = len(PHOTO_POSE_ANGLES)
    assert pose.spec == "pose-photos"
    assert pose.images.shape == (k * PHOTO_PER_BIN, 3, PHOTO_SIZE, PHOTO_SIZE)
    assert pose.images.dtype == torch.float32 and pose.labels.dtype == torch.int64
    assert 0 <= pose.images.min() and pose.images.max() <= 1
    assert pose.label_names == ["-60deg", "-45deg", "-30deg", "-15deg", "0deg", "+15deg", "+30deg", "+45deg", "+60deg"]
    assert pose.label_safe_rotation == 0.0
    assert torch.bincount(pose.labels, minlength=k).tolist() == [PHOTO_PER_BIN] * k


def test_pose_photos_are_in_colour(pose: ImageSet) -> None:
    # Grey pixels have R = G = B; photo content mostly does not.
    spread = (pose.images.amax(1) - pose.images.amin(1)).mean((1, 2))  # (N,) mean channel spread
    assert (spread > 0.02).float().mean() > 0.8
    assert spread.mean() > 0.04


def test_pose_photos_are_the_same_for_a_seed_and_differ_across_seeds(pose: ImageSet) -> None:
    again = load_pose_photos(seed=0)
    assert torch.equal(again.images, pose.images) and torch.equal(again.labels, pose.labels)
    assert not torch.equal(load_pose_photos(seed=1).images, pose.images)


def tilt_covariance(mean_image: torch.Tensor) -> float:
    """cov(x, y) over the print's area in a (3, H, W) mean image, y down: positive when the
    print's long axis runs from upper left to lower right on screen, negative when it runs from
    lower left to upper right."""
    weight = (mean_image - PHOTO_BACKGROUND).abs().sum(0)  # (H, W), zero on the bare canvas
    pos = torch.arange(PHOTO_SIZE, dtype=torch.float32) - (PHOTO_SIZE - 1) / 2
    y, x = pos[:, None], pos[None, :]
    w = weight / weight.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    return float((w * (x - mx) * (y - my)).sum())


def test_pose_photos_bins_differ_and_mirror_each_other(pose: ImageSet) -> None:
    means = [pose.images[pose.labels == k].mean(0) for k in range(pose.num_labels)]
    first, last = means[0], means[-1]
    assert (first - last).abs().mean() > 0.05
    # -60° mirrored left to right is +60° (crops are mirrored half the time, so content averages out).
    assert (first.flip(-1) - last).abs().mean() < 0.2 * (first - last).abs().mean()
    # Positive angles turn the print counter-clockwise on screen: its long axis, upright at 0°,
    # then runs from lower right to upper left, where x and y-down grow together.
    assert tilt_covariance(last) > 0 > tilt_covariance(first)
    assert abs(tilt_covariance(means[len(means) // 2])) < 0.1 * tilt_covariance(last)


def test_sklearn_digits_are_the_8x8_digits_scaled_to_unit_range(digits: ImageSet) -> None:
    assert digits.spec == "digits-8x8"
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == torch.float32
    assert digits.images.min() == 0 and digits.images.max() == 1
    assert digits.label_names == [str(d) for d in range(10)]
    assert torch.bincount(digits.labels).min() >= 170
    # Ink bright on dark: the border is mostly dark, the centre bright.
    assert digits.images[:, 0, :, 0].mean() < 0.1 < 0.4 < digits.images[:, 0, 3:5, 3:5].mean()
    again = load_sklearn_digits()
    assert torch.equal(again.images, digits.images) and torch.equal(again.labels, digits.labels)


def unpack(archive: Path, dest: Path) -> Path:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive, "r:gz") as tf:
            tf.extractall(dest, filter="data")
    return dest


def few_per_label(data: ImageSet, n: int) -> ImageSet:
    return data.subset(torch.cat([(data.labels == k).nonzero().squeeze(1)[:n] for k in range(data.num_labels)]))


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize(("which", "mode"), [("pose", "RGB"), ("digits", "L")])
def test_write_archive_round_trips_through_the_layout_reader(
    fmt: str, which: str, mode: str, pose: ImageSet, digits: ImageSet, tmp_path: Path
) -> None:
    data = few_per_label(pose if which == "pose" else digits, 4)
    data = data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(0)))  # labels interleaved
    archive = write_archive(data, tmp_path / f"set.{fmt}", fmt)  # type: ignore[arg-type]
    layout = read_layout(unpack(archive, tmp_path / "out"))
    assert layout.label_names == data.label_names
    assert layout.counts == {name: 4 for name in data.label_names}
    assert [layout.label_names[k] for k in layout.labels] == [p.parent.name for p in layout.files]
    # Files come back in label order, and within a label in the data's order.
    order = sorted(range(len(data)), key=lambda i: (int(data.labels[i]), i))
    for path, i in zip(layout.files, order, strict=True):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == mode
            pixels = np.asarray(im, dtype=np.float32) / 255
        expected = data.images[i].permute(1, 2, 0).squeeze(-1).numpy()
        assert np.abs(pixels - expected).max() <= 0.5 / 255 + 1e-6


def test_write_archive_refuses_what_cannot_be_a_folder_or_a_png(digits: ImageSet, tmp_path: Path) -> None:
    small = few_per_label(digits, 1)
    bad_name = ImageSet("x", small.images, small.labels, ["a/b", *small.label_names[1:]])
    with pytest.raises(InputError, match="folder name"):
        write_archive(bad_name, tmp_path / "a.zip", "zip")
    two_channels = ImageSet("x", small.images.repeat(1, 2, 1, 1), small.labels, small.label_names)
    with pytest.raises(InputError, match="1 or 3 channels"):
        write_archive(two_channels, tmp_path / "b.zip", "zip")
    with pytest.raises(InputError, match="archive format"):
        write_archive(small, tmp_path / "c.7z", "7z")  # type: ignore[arg-type]
