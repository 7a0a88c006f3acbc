"""The `atnl` command line, run in-process with typer's CliRunner: `atnl train` and `atnl eval` on real
digits, and what every command shares (`--version`, `-h`, one-line usage errors)."""

from __future__ import annotations

import json
import struct
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from models.checkpoint import load_checkpoint, read_meta
from models.data import ImageSet
from models.families import FAMILIES
from service.cli.app import app

runner = CliRunner()


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file: magic, big-endian dims, data."""
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory, mnist_5k: ImageSet) -> Path:
    """1,000 real digits (100 per label) as MNIST IDX files: the CLI on real data, at a fifth of mnist-5k's cost."""
    directory = tmp_path_factory.mktemp("mnist-idx")
    idx = [i for i in range(5000) if i % 500 < 100]
    pixels = (mnist_5k.images[idx, 0] * 255).round().to(torch.uint8).numpy()
    write_idx(directory / "train-images-idx3-ubyte", pixels)
    write_idx(directory / "train-labels-idx1-ubyte", mnist_5k.labels[idx].to(torch.uint8).numpy())
    return directory


@pytest.fixture(scope="module")
def cli_checkpoint(tmp_path_factory: pytest.TempPathFactory, idx_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("cli") / "ckpt"
    args = [
        "train",
        "--dataset",
        f"mnist-idx:{idx_dir}",
        "--epochs",
        "1",
        "--latent-dim",
        "8",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_loadable_checkpoint(cli_checkpoint: Path) -> None:
    meta = read_meta(cli_checkpoint)
    assert meta["family"] == "atnl" and meta["data"]["spec"].startswith("mnist-idx:")
    assert meta["train_config"]["epochs"] == 1 and meta["train_config"]["latent_dim"] == 8
    assert len(meta["data"]["test_indices"]) == 200
    assert load_checkpoint(cli_checkpoint).cfg.latent_dim == 8


def test_eval_prints_the_metrics_as_json(cli_checkpoint: Path, atnl_cache_dir: Path) -> None:
    result = runner.invoke(app, ["eval", str(cli_checkpoint), "--json", "--pairs", "50"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("sps", "coverage", "linear_probe_acc", "judge_acc"):
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 1.0, key
    assert metrics["path_slerp"]["pairs"] == 50
    assert metrics["judge_acc"] > 0.8  # a real judge, trained on the 800 real training digits
    assert list((atnl_cache_dir / "judges").iterdir()), "the judge is cached under ATNL_CACHE_DIR"
    assert read_meta(cli_checkpoint)["metrics"]["sps"] == metrics["sps"]  # stored in model.json
    load_checkpoint(cli_checkpoint)  # still verifies after the metadata update


def test_train_refuses_an_existing_directory_without_overwrite(cli_checkpoint: Path) -> None:
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(cli_checkpoint)])
    assert result.exit_code == 2
    assert "--overwrite" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "epoch=3"],
        ["--set", "epochs"],
        ["--set", "epochs=three"],
        ["--family", "gan"],
        ["--latent-dim", "2"],
        ["--device", "tpu"],
        ["--dataset", "mnist-6k"],
        ["--dataset", "folder:/no/such/folder"],
    ],
)
def test_train_rejects_bad_options_before_training(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "ckpt"), *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "ckpt").exists()


def test_eval_of_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a checkpoint" in result.output


def command_paths(command: typer.core.TyperGroup | typer.core.TyperCommand, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``atnl`` and every command and sub-command under it, as argument tuples."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


def test_version_prints_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"atnl {version('atnl')}\n"


@pytest.mark.parametrize("path", command_paths(typer.main.get_command(app)), ids=lambda path: " ".join(("atnl", *path)))
def test_dash_h_is_help_on_every_command(path: tuple[str, ...]) -> None:
    short, long = (runner.invoke(app, [*path, flag], prog_name="atnl") for flag in ("-h", "--help"))
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.stdout == long.stdout and f"Usage: {' '.join(('atnl', *path))} [OPTIONS]" in short.stdout


def test_train_help_lists_every_family_and_data_set_kind() -> None:
    result = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    assert f"one of: {', '.join(FAMILIES)} " in text
    for kind in ("mnist-5k", "pose-digits", "mnist-idx:DIR", "folder:DIR"):
        assert kind in text, kind
