"""The model store: a directory of checkpoints plus an ``ACTIVE`` pointer file.

    <store>/<model_id>/model.json, model.safetensors   one checkpoint each
    <store>/ACTIVE                                     the active model id

Checkpoints are written atomically by ``models.checkpoint``; the pointer is
replaced atomically (write a temp file, then rename), so readers see the old
id or the new one, never half of either. Shared by the API and the workers
through a volume; no database.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import CheckpointError, read_meta
from service.errors import InvalidInput, ModelNotFound

POINTER = "ACTIVE"
STORE_ID = "STORE_ID"
"""File naming the store with a random id, written once: a job carries the API's, so a worker
on another directory (a relative ATNL_MODEL_STORE, a missing volume) refuses it at once."""
DATASETS_DIR = "datasets"
"""Folder of the store holding uploaded data sets (``service.dataset_store``); not a model: no model.json."""
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Model ids are directory names: no path separators, no leading dot (temp dirs start with one)."""
PARTIAL = ".{model_id}.tmp-*"
"""What a checkpoint being written is called until its rename (``models.checkpoint.save_checkpoint``'s
temporary directory); never listed, and left behind only by a writer killed inside the write."""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def new_model_id(family: str) -> str:
    """``<family>-<UTC time>-<random>``: sorts by creation time, unique across workers."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{family}-{stamp}-{secrets.token_hex(3)}"


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure(self) -> ModelStore:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def store_id(self) -> str:
        """This store's id, created on first use (exclusively: concurrent processes agree)."""
        path = self.ensure().root / STORE_ID
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            for _ in range(50):  # another process is writing it right now
                text = path.read_text().strip()
                if text:
                    return text
                time.sleep(0.01)
            raise
        with os.fdopen(fd, "w") as f:
            store_id = secrets.token_hex(8)
            f.write(store_id + "\n")
        return store_id

    def path(self, model_id: str) -> Path:
        """Directory of ``model_id``; InvalidInput for ids that are not plain names."""
        if not MODEL_ID.match(model_id):
            raise InvalidInput(f"invalid model id {model_id!r}")
        return self.root / model_id

    def checkpoint(self, model_id: str) -> Path:
        """Directory of an existing checkpoint, or ModelNotFound."""
        path = self.path(model_id)
        if not (path / "model.json").is_file():
            raise ModelNotFound(f"no model {model_id!r} in the store")
        return path

    def exists(self, model_id: str) -> bool:
        """Whether ``model_id`` is a complete checkpoint of this store."""
        return bool(MODEL_ID.match(model_id)) and (self.root / model_id / "model.json").is_file()

    def remove_partial(self, model_id: str) -> list[str]:
        """Delete what a writer killed inside the atomic write left of ``model_id`` (its temporary
        directory); returns the names removed. Call it only once that writer is known to be dead
        (its job failed or lost): a live one would lose its checkpoint."""
        self.path(model_id)  # checks the id: the pattern below must stay inside the store
        removed = []
        for tmp in self.root.glob(PARTIAL.format(model_id=model_id)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
        return removed

    def ids(self) -> list[str]:
        """Ids of every complete checkpoint, oldest first by created_at."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if MODEL_ID.match(p.name) and (p / "model.json").is_file()]
        return [p.name for p in sorted(found, key=lambda p: (self._created_at(p), p.name))]

    @staticmethod
    def _meta(path: Path) -> dict[str, Any]:
        """model.json of ``path``, or {} when it cannot be read as a JSON object (a broken or
        hand-edited checkpoint must not break listing the others)."""
        try:
            meta = read_meta(path)
        except (CheckpointError, OSError, UnicodeDecodeError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @classmethod
    def _created_at(cls, path: Path) -> str:
        return str(cls._meta(path).get("created_at", ""))

    def describe(self, model_id: str) -> dict[str, Any]:
        """id, family, dataset, labels, image shape, preprocessing, created_at and metrics from
        model.json (None / [] / {} where unreadable)."""
        meta = self._meta(self.checkpoint(model_id))
        data, cfg, labels = (_section(meta, key) for key in ("data", "model_config", "labels"))
        metrics = meta.get("metrics")
        names = labels.get("names")
        size = cfg.get("image_size")
        return {
            "id": model_id,
            "family": _text(meta.get("family")),
            "dataset": _text(data.get("spec")),
            "labels": [str(n) for n in names] if isinstance(names, list) else [],
            "image_shape": [cfg.get("channels", 1), size, size] if isinstance(size, int) else None,
            "preprocess": _text(cfg.get("preprocess", "digits")) if cfg else None,
            "created_at": _text(meta.get("created_at")),
            "metrics": metrics if isinstance(metrics, dict) else {},
        }

    def listing(self) -> list[dict[str, Any]]:
        """``describe`` of every model, oldest first (reads every model.json: call it off the event loop)."""
        return [self.describe(model_id) for model_id in self.ids()]

    def active_id(self) -> str | None:
        """The id the pointer names, if it names an existing checkpoint."""
        try:
            model_id = (self.root / POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        return model_id if model_id and self.exists(model_id) else None

    def set_active(self, model_id: str) -> None:
        """Point ACTIVE at ``model_id``, atomically."""
        self.checkpoint(model_id)
        tmp = self.root / f".{POINTER}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(model_id + "\n")
        os.replace(tmp, self.root / POINTER)

    def default_id(self) -> str | None:
        """What to serve: the active model, else the newest checkpoint, else None."""
        ids = self.ids()
        return self.active_id() or (ids[-1] if ids else None)
