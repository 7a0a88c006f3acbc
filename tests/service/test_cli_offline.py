"""`atnl train --dataset ARCHIVE.zip`, `atnl interpolate` and `atnl hallucinate` as real
subprocesses, on a colour model of a non-28 side: the files they write, and every mistake
answered in one line, with a nonzero exit and no traceback. Marked e2e: each of its dozen
processes imports torch (seconds on a busy 2-core machine; tests/service/test_cli.py runs
the commands in-process)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.servers import atnl_command, atnl_env
from models.image_set import ImageSet
from models.photo_sets import write_archive
from tests.service.archives import bar_picture, labelled, zip_of

pytestmark = pytest.mark.e2e
NAMES = ["flat", "rising", "upright", "falling"]
"""Words, not numbers: their order comes from the archive's labels.txt."""
SIDE = 20
PER_LABEL = 12
CLI_TIMEOUT = 180.0
"""Seconds one command may take on a loaded 2-core machine (importing torch alone takes several)."""


def atnl(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``atnl ARGS`` run from ``cwd`` (no stray .env), its errors unwrapped (a wide terminal)."""
    full = atnl_env({"COLUMNS": "1000", **(env or {})})
    return subprocess.run(atnl_command(*args), cwd=cwd, env=full, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def bar_set(per_label: int, side: int, seed: int) -> ImageSet:
    """``per_label`` bar pictures of each of NAMES: (N, 3, side, side) in [0, 1]."""
    rng = np.random.default_rng(seed)
    pictures = [np.asarray(bar_picture(k, rng, side)) for k in range(len(NAMES)) for _ in range(per_label)]
    images = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 255  # (N, 3, S, S)
    labels = torch.arange(len(NAMES)).repeat_interleave(per_label)
    return ImageSet("bars", images.contiguous(), labels, NAMES, label_safe_rotation=0.0, preprocess="fit")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-offline")


@pytest.fixture(scope="module")
def model(workdir: Path) -> Path:
    """A colour checkpoint trained by `atnl train` on a zip that write_archive wrote (a few seconds)."""
    archive = write_archive(bar_set(PER_LABEL, SIDE, seed=0), workdir / "bars.zip")
    out = workdir / "model"
    tiny = ["--set", "epochs=1", "--set", "batch_size=16", "--set", "realism_weight=0", "--set", "threads=1"]
    done = atnl(workdir, "train", "--dataset", str(archive), "--latent-dim", "8", "--device", "cpu", "--out", str(out), *tiny)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def pictures(workdir: Path) -> dict[str, Path]:
    """New bar pictures of each label, larger than the model's side, as PNG files by label name."""
    rng = np.random.default_rng(5)
    paths = {}
    for k, name in enumerate(NAMES):
        paths[name] = workdir / f"{name}.png"
        bar_picture(k, rng, 48).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def examples(workdir: Path) -> Path:
    """Labelled examples of three of the labels (not "rising", between two of them), one
    sub-folder each, in JPEG at another side."""
    root = workdir / "examples"
    rng = np.random.default_rng(9)
    for name in ("flat", "upright", "falling"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            bar_picture(NAMES.index(name), rng, 32).save(root / name / f"{i}.jpg", quality=95)
    return root


def described(path: Path) -> tuple[str | None, str, tuple[int, int], int]:
    """The format, mode, size (width, height) and frames of the picture at ``path``."""
    with Image.open(path) as img:
        return img.format, img.mode, img.size, getattr(img, "n_frames", 1)


def test_train_on_an_archive_records_its_labels_colour_and_side(model: Path, workdir: Path) -> None:
    meta = json.loads((model / "model.json").read_text())
    assert meta["labels"]["names"] == NAMES  # labels.txt's order, not the text order
    assert meta["data"]["spec"] == str(workdir / "bars.zip") and meta["data"]["image_shape"] == [3, SIDE, SIDE]
    assert meta["model_config"]["channels"] == 3 and meta["model_config"]["image_size"] == SIDE
    assert meta["model_config"]["preprocess"] == "fit"


def test_interpolate_writes_a_strip_and_a_gif(model: Path, pictures: dict[str, Path], workdir: Path) -> None:
    ends = [str(pictures["flat"]), str(pictures["falling"])]
    strip, gif = workdir / "morph" / "strip.png", workdir / "morph" / "morph.gif"
    done = atnl(workdir, "interpolate", *ends, "--model", str(model), "--steps", "7", "--out", str(strip))
    assert done.returncode == 0, done.stderr
    assert described(strip) == ("PNG", "RGB", (7 * SIDE, SIDE), 1)
    done = atnl(workdir, "interpolate", *ends, "--model", str(model), "--steps", "5", "--out", str(gif))
    assert done.returncode == 0, done.stderr
    fmt, _, size, frames = described(gif)
    assert (fmt, size, frames) == ("GIF", (SIDE, SIDE), 5)


def test_hallucinate_writes_pngs_and_their_labels(model: Path, examples: Path, workdir: Path) -> None:
    out = workdir / "made"
    args = ["--model", str(model), "--examples", str(examples), "--per-class", "3", "--check", "none", "--out", str(out)]
    done = atnl(workdir, "hallucinate", *args)
    assert done.returncode == 0, done.stderr
    with (out / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["label"] for row in rows) == sorted(NAMES * 3)  # "rising" too: its two neighbours have examples
    assert all(row["read"] in NAMES for row in rows)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(row["file"] for row in rows)
    for row in rows:
        assert described(out / row["file"]) == ("PNG", "RGB", (SIDE, SIDE), 1)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line that says what went wrong (the text inside the error box), after checking
    that the command failed with no traceback."""
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line.strip("│ ") for line in done.stderr.splitlines() if line.startswith("│")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_offline_mistakes_are_one_line(model: Path, pictures: dict[str, Path], examples: Path, workdir: Path) -> None:
    fine = [str(pictures["flat"]), str(pictures["upright"])]
    missing = atnl(workdir, "interpolate", *fine, "--model", str(workdir / "no-model"), "--out", "x.png")
    assert "not a readable checkpoint" in error_line(missing)

    (workdir / "notes.png").write_text("not a picture")
    not_image = atnl(workdir, "interpolate", str(workdir / "notes.png"), fine[1], "--model", str(model), "--out", "x.png")
    assert "notes.png: not a readable image" in error_line(not_image)

    suffix = atnl(workdir, "interpolate", *fine, "--model", str(model), "--out", "strip.jpg")
    assert "write a .png strip or a .gif" in error_line(suffix)

    strange = workdir / "strange-examples"
    (strange / "sideways").mkdir(parents=True)
    shutil.copy(pictures["flat"], strange / "sideways" / "0.png")
    unknown = atnl(workdir, "hallucinate", "--model", str(model), "--examples", str(strange), "--out", str(workdir / "u"))
    assert "'sideways' is not one of the model's labels" in error_line(unknown)
    assert not (workdir / "u").exists() and not list(workdir.glob("x.png")) and not (workdir / "strip.jpg").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dataset", "folder:/no/such/folder"], "/no/such/folder is not a directory"),
        (["--set", "epochs=abc"], "'epochs=abc': the value is not JSON"),
        (["--dataset", "HOSTILE"], "archive member '../x.png'"),
    ],
)
def test_train_mistakes_are_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    hostile = tmp_path / "some.zip"
    hostile.write_bytes(zip_of([*labelled(["1", "2", "3"]), ("../x.png", b"\x89PNG")]))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = [str(hostile) if a == "HOSTILE" else a for a in args]
    done = atnl(tmp_path, "train", "--device", "cpu", "--out", str(tmp_path / "ckpt"), *args, env={"TMPDIR": str(scratch)})
    assert says in error_line(done)
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "x.png").exists()
    assert list(scratch.iterdir()) == []  # an archive's temporary folder is gone, nothing was written beside it
