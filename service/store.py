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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import CheckpointError, read_meta
from service.errors import InvalidInput, ModelNotFound

POINTER = "ACTIVE"
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Model ids are directory names: no path separators, no leading dot (temp dirs start with one)."""


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

    def ids(self) -> list[str]:
        """Ids of every complete checkpoint, oldest first by created_at."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if MODEL_ID.match(p.name) and (p / "model.json").is_file()]
        return [p.name for p in sorted(found, key=lambda p: (self._created_at(p), p.name))]

    @staticmethod
    def _created_at(path: Path) -> str:
        try:
            return str(read_meta(path).get("created_at", ""))
        except CheckpointError:
            return ""

    def describe(self, model_id: str) -> dict[str, Any]:
        """id, family, dataset, created_at and metrics from model.json."""
        meta = read_meta(self.checkpoint(model_id))
        return {
            "id": model_id,
            "family": meta.get("family"),
            "dataset": (meta.get("data") or {}).get("spec"),
            "created_at": meta.get("created_at"),
            "metrics": meta.get("metrics") or {},
        }

    def active_id(self) -> str | None:
        """The id the pointer names, if it names an existing checkpoint."""
        try:
            model_id = (self.root / POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        if not model_id or not MODEL_ID.match(model_id) or not (self.root / model_id / "model.json").is_file():
            return None
        return model_id

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
