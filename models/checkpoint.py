"""Checkpoints: a directory holding ``model.safetensors`` and ``model.json``.

Written atomically: everything goes into a temporary sibling directory that is
renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.networks import ModelConfig, SemanticAutoencoder

WEIGHTS = "model.safetensors"
META = "model.json"
FORMAT_VERSION = 1
"""Bumped when model.json changes incompatibly."""


class CheckpointError(ValueError):
    """A directory that is not a loadable checkpoint."""


def code_version() -> str:
    try:
        from importlib.metadata import version

        return version("atnl")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "0+unknown"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: SemanticAutoencoder, meta: dict[str, Any], out: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` and ``meta`` (merged with model_config, created_at,
    code_version, content_hash) to directory ``out``, atomically.

    An existing ``out`` is replaced only with ``overwrite``; the old one is
    removed only after the new one is in place."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old: Path | None = None
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        full = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            **meta,
            "model_config": model.cfg.to_dict(),
            "content_hash": "sha256:" + file_sha256(tmp / WEIGHTS),
        }
        (tmp / META).write_text(json.dumps(full, indent=2) + "\n")
        for p in (tmp / WEIGHTS, tmp / META):
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.rename(old, out)  # the new one never arrived: put the old one back
        raise
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """model.json of checkpoint directory ``path``."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {META} is missing")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_path} is not valid JSON: {e}") from e
    return meta


def update_meta(path: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into model.json atomically (write then rename)."""
    meta = read_meta(path) | changes
    tmp = Path(path) / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, Path(path) / META)
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> SemanticAutoencoder:
    """Load a checkpoint directory as an eval-mode model; ``model.meta`` holds model.json.

    ``model.encode(x)`` -> (N, d) unit vectors, ``model.decode(z)`` -> (N, C, H, W) in [0, 1]."""
    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {WEIGHTS} is missing")
    if verify and meta.get("content_hash") != "sha256:" + file_sha256(weights):
        raise CheckpointError(f"{weights} does not match the content_hash in {META}")
    try:
        cfg = ModelConfig(**meta["model_config"])
        model = SemanticAutoencoder(cfg)
        model.load_state_dict(load_file(str(weights)))
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights and model_config do not fit: {e}") from e
    model.meta = meta
    return model.to(device).eval()
