"""Data sets of docs/API.md §7: mnist-5k, mnist-idx:DIR, folder:DIR (label order, colour, sides), pose-digits;
seeded splits; bad specs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.data import POSE_ANGLES, DatasetError, ImageSet, deskew, load_dataset, rotate, split_indices


def test_mnist_5k_is_500_real_digits_of_each_label(mnist_5k: ImageSet) -> None:
    assert len(mnist_5k) == 5000 and mnist_5k.spec == "mnist-5k"
    assert mnist_5k.images.shape == (5000, 1, 28, 28) and mnist_5k.images.dtype == torch.float32
    assert mnist_5k.labels.dtype == torch.int64
    assert mnist_5k.label_names == [str(d) for d in range(10)] and mnist_5k.num_labels == 10
    assert torch.bincount(mnist_5k.labels).tolist() == [500] * 10
    assert mnist_5k.images.min() == 0.0 and mnist_5k.images.max() == 1.0
    # Real digits: ink bright on a dark background, a minority of the pixels.
    assert 0.05 < mnist_5k.images.mean() < 0.25
    assert (mnist_5k.images[:, :, 0, :] == 0).float().mean() > 0.95  # empty top row


def test_subset_keeps_names_and_picks_items(mnist_5k: ImageSet) -> None:
    sub = mnist_5k.subset([4, 0, 4])
    assert len(sub) == 3 and sub.label_names == mnist_5k.label_names
    assert torch.equal(sub.images[0], mnist_5k.images[4]) and torch.equal(sub.labels, mnist_5k.labels[[4, 0, 4]])


# --- mnist-idx:DIR ---------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (unsigned byte), ndim, big-endian dims, then the data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    raw = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def random_idx_set(rng: np.random.Generator, n: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (n, size, size)), rng.integers(0, 10, n)


def test_mnist_idx_reads_plain_and_gzipped_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (x_tr, y_tr), (x_te, y_te) = random_idx_set(rng, 12), random_idx_set(rng, 5)
    y_tr[:10] = np.arange(10)  # all ten digits present
    write_idx(tmp_path / "train-images-idx3-ubyte", x_tr)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y_tr)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x_te, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_te, compress=True)

    data = load_dataset(f"mnist-idx:{tmp_path}")
    assert data.spec == f"mnist-idx:{tmp_path}"
    assert data.images.shape == (17, 1, 28, 28) and data.images.dtype == torch.float32
    expected = np.concatenate([x_tr, x_te]).astype(np.float32) / 255.0
    assert torch.equal(data.images[:, 0], torch.from_numpy(expected))
    assert data.labels.tolist() == [*y_tr.tolist(), *y_te.tolist()]
    assert data.label_names == [str(d) for d in range(10)]


def test_mnist_idx_with_only_a_gzipped_training_set_and_dotted_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y = random_idx_set(rng, 6)
    write_idx(tmp_path / "train-images.idx3-ubyte", x, compress=True)
    write_idx(tmp_path / "train-labels.idx1-ubyte", y, compress=True)
    data = load_dataset(f"mnist-idx:{tmp_path}")
    assert len(data) == 6 and data.labels.tolist() == y.tolist()


def test_mnist_idx_brings_other_sizes_to_28(tmp_path: Path) -> None:
    x = np.zeros((2, 56, 56), dtype=np.uint8)
    x[:, :28, :28] = 255  # top-left quarter lit
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1]))
    data = load_dataset(f"mnist-idx:{tmp_path}")
    assert data.images.shape == (2, 1, 28, 28)
    assert data.images[0, 0, :14, :14].min() == 1.0 and data.images[0, 0, 14:, 14:].max() == 0.0


def test_mnist_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no MNIST IDX files"):
        load_dataset(f"mnist-idx:{tmp_path}")
    x, y = random_idx_set(np.random.default_rng(2), 4)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:3])
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset(f"mnist-idx:{tmp_path}")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(y)[:-1])  # truncated body
    with pytest.raises(DatasetError, match="header says"):
        load_dataset(f"mnist-idx:{tmp_path}")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float IDX
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX file"):
        load_dataset(f"mnist-idx:{tmp_path}")


# --- folder:DIR ------------------------------------------------------------------------------------


def digit_like(size: int, ink: int, paper: int, mode: str = "L") -> Image.Image:
    """A bar of ``ink`` on ``paper``, as a scan would give."""
    arr = np.full((size, size), paper, dtype=np.uint8)
    arr[size // 4 : 3 * size // 4, size // 2 - size // 8 : size // 2 + size // 8] = ink
    return Image.fromarray(arr, "L").convert(mode)


def make_folder(root: Path) -> Path:
    # Names that are not numbers: labels.txt gives the order; a stray file at the top is ignored.
    (root / "01_+0deg").mkdir(parents=True)
    (root / "00_-45deg").mkdir()
    (root / "02_+45deg").mkdir()
    digit_like(28, ink=255, paper=0).save(root / "00_-45deg" / "a.png")  # already MNIST-like
    digit_like(40, ink=20, paper=235, mode="RGB").save(root / "00_-45deg" / "b.JPG", quality=95)  # dark on light
    digit_like(64, ink=0, paper=255).save(root / "01_+0deg" / "scan.jpeg", quality=95)
    digit_like(28, ink=200, paper=10, mode="RGBA").save(root / "02_+45deg" / "x.png")
    (root / "README").write_text("not a label folder")
    (root / "labels.txt").write_text("00_-45deg\n01_+0deg\n02_+45deg\n")
    return root


def test_folder_reads_png_and_jpeg_in_the_order_of_labels_txt(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "poses")
    (root / "labels.txt").write_text("02_+45deg\n00_-45deg\n01_+0deg\n")
    data = load_dataset(f"folder:{root}", preprocess="digits")
    assert data.spec == f"folder:{root}" and data.preprocess == "digits"
    assert data.label_names == ["02_+45deg", "00_-45deg", "01_+0deg"]
    assert data.labels.tolist() == [0, 1, 1, 2]
    assert data.images.shape == (4, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0


def test_folder_digits_preprocessing_inverts_light_backgrounds(tmp_path: Path) -> None:
    data = load_dataset(f"folder:{make_folder(tmp_path / 'poses')}", preprocess="digits")
    for img in data.images:
        # After loading, every image is bright ink on a dark background, whatever it was on disk.
        centre, corner = img[0, 12:16, 12:16].mean(), img[0, :4, :4].mean()
        assert corner < 0.1 and centre > 0.6, (float(corner), float(centre))
        assert img.mean() < 0.5


def colour_folder(root: Path, names: list[str], size: tuple[int, int] = (40, 30)) -> Path:
    """One folder per name, two RGB images each: a bar whose colour and place follow the label."""
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(2):
            arr = np.full((size[1], size[0], 3), 200, np.uint8)
            arr[5:20, 3 + 4 * k : 7 + 4 * k] = (40 * k, 255 - 40 * k, 60 * i)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_numeric_label_names_sort_as_numbers_not_as_text(tmp_path: Path) -> None:
    data = load_dataset(f"folder:{colour_folder(tmp_path / 'sizes', ['40', '5', '20', '10'])}")
    assert data.label_names == ["5", "10", "20", "40"]  # text order would be 10, 20, 40, 5
    assert data.counts == {"5": 2, "10": 2, "20": 2, "40": 2}


def test_fit_keeps_colour_at_the_smallest_side(tmp_path: Path) -> None:
    data = load_dataset(f"folder:{colour_folder(tmp_path / 'c', ['1', '2', '3'])}")
    assert data.preprocess == "fit" and data.image_shape == [3, 30, 30] and data.label_safe_rotation == 0.0
    assert (data.images[:, 0] - data.images[:, 1]).abs().max() > 0.3  # the channels differ: colour kept
    assert load_dataset(f"folder:{tmp_path / 'c'}", image_size=12).image_shape == [3, 12, 12]


def test_words_without_labels_txt_are_refused_not_guessed(tmp_path: Path) -> None:
    colour_folder(tmp_path / "w", ["small", "medium", "large"])
    with pytest.raises(DatasetError, match=r"add labels\.txt"):
        load_dataset(f"folder:{tmp_path / 'w'}")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    colour_folder(tmp_path / "two", ["1", "2"])
    with pytest.raises(DatasetError, match="at least 3 labels"):
        load_dataset(f"folder:{tmp_path / 'two'}")
    colour_folder(tmp_path / "gif", ["1", "2", "3"])
    (tmp_path / "gif" / "3" / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(DatasetError, match=r"3/a\.gif: not a PNG or JPEG"):
        load_dataset(f"folder:{tmp_path / 'gif'}")
    colour_folder(tmp_path / "bad", ["1", "2", "3"])
    (tmp_path / "bad" / "3" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"3/x\.png: not a readable"):
        load_dataset(f"folder:{tmp_path / 'bad'}")


# --- pose-digits -----------------------------------------------------------------------------------


def test_pose_digits_are_mnist_5k_rotated_into_ordered_angle_bins(mnist_5k: ImageSet) -> None:
    pose = load_dataset("pose-digits")
    assert pose.spec == "pose-digits" and len(pose) == 5000
    assert pose.images.shape == (5000, 1, 28, 28)
    assert pose.images.min() >= 0.0 and pose.images.max() <= 1.0
    k = len(POSE_ANGLES)
    assert pose.num_labels == k and pose.label_names[0].startswith("00_") and "-60deg" in pose.label_names[0]
    counts = torch.bincount(pose.labels, minlength=k)
    assert counts.max() - counts.min() <= 1  # balanced bins
    # Item i is digit i of mnist-5k, deskewed, turned by its bin's angle (±2° jitter).
    for b in (0, k - 1):
        idx = (pose.labels == b).nonzero().squeeze(1)[:50]
        base = deskew(mnist_5k.images[idx])
        turned = rotate(base, torch.full((len(idx),), float(POSE_ANGLES[b])))
        assert (pose.images[idx] - turned).abs().mean() < 0.5 * (pose.images[idx] - base).abs().mean()
    again = load_dataset("pose-digits")
    assert torch.equal(again.images, pose.images) and torch.equal(again.labels, pose.labels)


def test_deskew_stands_a_leaning_stroke_upright_and_centres_it() -> None:
    # A 1 drawn as a line leaning right (top to the right), off centre.
    img = torch.zeros(1, 1, 28, 28)
    for row in range(4, 24):
        img[0, 0, row, 14 - (row - 14) // 2 + 3] = 1.0
    upright = deskew(img)[0, 0]
    cols = (upright > 0.3).nonzero()[:, 1]
    assert cols.max() - cols.min() <= 2  # one column wide: no lean left
    mass = upright.sum()
    centre_x = (upright.sum(0) * torch.arange(28)).sum() / mass
    assert abs(centre_x - 13.5) < 0.6
    assert torch.allclose(deskew(torch.zeros(2, 1, 28, 28)), torch.zeros(2, 1, 28, 28))  # blank stays blank


# --- splits and specs ------------------------------------------------------------------------------


def test_split_is_stratified_seeded_disjoint_and_complete(mnist_5k: ImageSet) -> None:
    train, test = split_indices(mnist_5k.labels, 0.2, seed=0)
    assert train == sorted(train) and test == sorted(test)
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(5000))
    assert torch.bincount(mnist_5k.labels[test]).tolist() == [100] * 10
    assert split_indices(mnist_5k.labels, 0.2, seed=0) == (train, test)
    assert split_indices(mnist_5k.labels, 0.2, seed=1)[1] != test


def test_split_keeps_at_least_one_test_item_per_label() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    train, test = split_indices(labels, 0.1, seed=3)
    assert sorted(labels[test].tolist()) == [0, 1, 2]
    assert len(train) == 7


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(torch.tensor([0, 1]), fraction, seed=0)


@pytest.mark.parametrize("spec", ["mnist", "mnist-5K", "", "mnist-idx:", "folder:", "imagenet:/data", "mnist-idx"])
def test_bad_specs_raise_dataset_error(spec: str) -> None:
    with pytest.raises(DatasetError, match="unknown data set"):
        load_dataset(spec)


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)
