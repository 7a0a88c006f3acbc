"""Checkpoints (docs/API.md §6): bit-exact round trip, content hash, overwrite, atomic writes,
and the load_checkpoint contract on a real trained checkpoint."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import models
from models.checkpoint import META, WEIGHTS, CheckpointError, load_checkpoint, read_meta, save_checkpoint, update_meta
from models.data import ImageSet, split_indices
from models.networks import SemanticAutoencoder

ModelFactory = Callable[..., SemanticAutoencoder]
"""The ``make_model`` fixture of conftest.py."""

META_IN = {"family": "atnl", "data": {"spec": "mnist-5k", "test_indices": [3, 1, 4]}}


def leftovers(parent: Path) -> list[str]:
    """Temporary or set-aside siblings a save may have left behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_round_trip_is_bit_exact(tmp_path: Path, make_model: ModelFactory) -> None:
    model = make_model(latent_dim=5)
    out = save_checkpoint(model, META_IN, tmp_path / "ckpt")
    assert out == tmp_path / "ckpt"
    assert sorted(p.name for p in out.iterdir()) == [META, WEIGHTS]
    loaded = load_checkpoint(out)
    saved, got = model.state_dict(), loaded.state_dict()
    assert saved.keys() == got.keys()
    for name, tensor in saved.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert loaded.cfg == model.cfg
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert leftovers(tmp_path) == []


def test_meta_holds_the_callers_fields_and_the_savers(tmp_path: Path, make_model: ModelFactory) -> None:
    model = make_model()
    out = save_checkpoint(model, META_IN, tmp_path / "ckpt")
    meta = read_meta(out)
    assert meta["data"]["test_indices"] == [3, 1, 4]
    assert meta["family"] == "atnl"
    assert meta["model_config"] == model.cfg.to_dict()
    assert meta["content_hash"].startswith("sha256:") and len(meta["content_hash"]) == len("sha256:") + 64
    for key in ("format_version", "created_at", "code_version"):
        assert key in meta
    assert json.loads((out / META).read_text()) == meta
    assert load_checkpoint(out).meta == meta


def test_a_tampered_weights_file_is_refused(tmp_path: Path, make_model: ModelFactory) -> None:
    out = save_checkpoint(make_model(), META_IN, tmp_path / "ckpt")
    raw = bytearray((out / WEIGHTS).read_bytes())
    raw[-1] ^= 0x01  # one bit of the last weight; the safetensors header stays valid
    (out / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="content_hash"):
        load_checkpoint(out)
    loaded = load_checkpoint(out, verify=False)  # the caller may opt out
    assert not loaded.training


@pytest.mark.parametrize("missing", [META, WEIGHTS])
def test_a_directory_missing_a_file_is_not_a_checkpoint(tmp_path: Path, make_model: ModelFactory, missing: str) -> None:
    out = save_checkpoint(make_model(), META_IN, tmp_path / "ckpt")
    (out / missing).unlink()
    with pytest.raises(CheckpointError, match=f"{missing} is missing"):
        load_checkpoint(out)


def test_bad_json_and_mismatched_config_raise_checkpoint_errors(tmp_path: Path, make_model: ModelFactory) -> None:
    out = save_checkpoint(make_model(), META_IN, tmp_path / "ckpt")
    meta = read_meta(out)
    meta["model_config"]["latent_dim"] = 7  # weights are for 6
    (out / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(out)
    (out / META).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_meta(out)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nowhere")


def test_overwrite_semantics(tmp_path: Path, make_model: ModelFactory) -> None:
    first, second = make_model(seed=1), make_model(seed=2)
    out = save_checkpoint(first, {"tag": "first"}, tmp_path / "ckpt")
    with pytest.raises(FileExistsError):
        save_checkpoint(second, {"tag": "second"}, out)
    assert read_meta(out)["tag"] == "first"
    assert torch.equal(load_checkpoint(out).decoder.net[0].weight, first.decoder.net[0].weight)

    save_checkpoint(second, {"tag": "second"}, out, overwrite=True)
    assert read_meta(out)["tag"] == "second"
    assert torch.equal(load_checkpoint(out).decoder.net[0].weight, second.decoder.net[0].weight)
    assert leftovers(tmp_path) == []


def test_save_creates_missing_parent_directories(tmp_path: Path, make_model: ModelFactory) -> None:
    out = save_checkpoint(make_model(), META_IN, tmp_path / "store" / "deep" / "ckpt")
    assert load_checkpoint(out).cfg.latent_dim == 6


def test_a_failure_while_writing_leaves_no_partial_directory(tmp_path: Path, make_model: ModelFactory) -> None:
    # The weights are already written when the meta fails to serialise.
    with pytest.raises(TypeError):
        save_checkpoint(make_model(), {"bad": object()}, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_checkpoint(tmp_path: Path, make_model: ModelFactory) -> None:
    old_model = make_model(seed=1)
    out = save_checkpoint(old_model, {"tag": "old"}, tmp_path / "ckpt")
    with pytest.raises(TypeError):
        save_checkpoint(make_model(seed=2), {"bad": object()}, out, overwrite=True)
    assert read_meta(out)["tag"] == "old"
    assert torch.equal(load_checkpoint(out).encoder.net[0].weight, old_model.encoder.net[0].weight)
    assert leftovers(tmp_path) == []


def test_a_failed_final_rename_puts_the_old_checkpoint_back(
    tmp_path: Path, make_model: ModelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rename cannot be made to fail for real on one file system; inject the fault at the last step.
    out = save_checkpoint(make_model(seed=1), {"tag": "old"}, tmp_path / "ckpt")
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == out and ".tmp-" in Path(src).name:
            raise OSError("injected: rename into place failed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(make_model(seed=2), {"tag": "new"}, out, overwrite=True)
    monkeypatch.undo()
    assert read_meta(out)["tag"] == "old"
    load_checkpoint(out)
    assert leftovers(tmp_path) == []


def test_update_meta_merges_atomically_and_keeps_the_hash_valid(tmp_path: Path, make_model: ModelFactory) -> None:
    out = save_checkpoint(make_model(), META_IN, tmp_path / "ckpt")
    before = read_meta(out)
    merged = update_meta(out, metrics={"sps": 0.5}, family="atnl")
    assert merged == before | {"metrics": {"sps": 0.5}}
    assert read_meta(out) == merged
    assert sorted(p.name for p in out.iterdir()) == [META, WEIGHTS]
    assert load_checkpoint(out).meta["metrics"] == {"sps": 0.5}  # still verifies


# --- the docs/API.md §6 contract on a real trained checkpoint ----------------------------------------


def test_load_checkpoint_contract(tiny_checkpoint: Path, mnist_5k: ImageSet) -> None:
    m = models.load_checkpoint(tiny_checkpoint)
    assert isinstance(m, torch.nn.Module)
    assert not m.training and not any(sub.training for sub in m.modules())
    x = mnist_5k.images[:16]
    with torch.no_grad():
        z = m.encode(x)
        assert z.shape == (16, 8) and z.dtype == torch.float32
        torch.testing.assert_close(z.norm(dim=1), torch.ones(16), atol=1e-5, rtol=0)
        images = m.decode(z)
        assert images.shape == (16, 1, 28, 28)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert torch.equal(m.encode(x), z)  # eval mode: deterministic
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        m.encode(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match=r"expected latents of shape \(N, 8\)"):
        m.decode(torch.rand(2, 7))


def test_trained_checkpoint_records_its_split(tiny_checkpoint: Path, mnist_5k: ImageSet) -> None:
    meta = read_meta(tiny_checkpoint)
    data = meta["data"]
    _, test = split_indices(mnist_5k.labels, data["test_fraction"], data["split_seed"])
    assert data["test_indices"] == test
    assert data["spec"] == "mnist-5k" and data["n_test"] == len(test) == 1000
    assert meta["family"] == "atnl"
    assert meta["labels"]["names"] == [str(d) for d in range(10)]
    assert meta["loss"]["atnl"]["name"] == "AngularTripletNeighborLoss"  # the loss's exact form is recorded
    assert {"linear_probe_acc", "knn5_cosine_acc"} <= set(meta["metrics"])
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == [META, WEIGHTS]


def test_a_copied_checkpoint_loads_anywhere(tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "moved"))
    a, b = load_checkpoint(tiny_checkpoint), load_checkpoint(copy)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
