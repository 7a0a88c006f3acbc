"""The model store: checkpoints plus an ``ACTIVE`` pointer, in a directory or an S3 bucket.

    <store>/<model_id>/model.json, model.safetensors   one checkpoint each
    <store>/ACTIVE                                     the active model id
    <store>/STORE_ID                                   the store's random id, written once
    <store>/datasets/<id>/...                          uploaded data sets (service.dataset_store)

The bytes live behind ``service.objects`` (``ATNL_MODEL_STORE``: a directory, or
``s3://BUCKET/PREFIX``). A checkpoint is immutable once written; ``ACTIVE`` is the one small
mutable object, replaced whole, so readers see the old id or the new one.

- A directory store writes checkpoints in place, atomically (``models.checkpoint``: a
  temporary directory renamed), and reads them in place.
- An S3 store is written from a local staging directory: the weights first, ``model.json``
  last, so a prefix without ``model.json`` is a partial write (never listed; removed once its
  writer is known dead). A replica reads a checkpoint from its ``ATNL_MODEL_CACHE``, where it
  downloads each one once into a folder named by its content hash and verifies the weights
  against it.
- ``STORE_ID`` is created exclusively (a conditional put on S3), so every process that opens
  the store agrees on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.checkpoint import META, WEIGHTS, file_sha256
from service.errors import InvalidInput, ModelNotFound
from service.objects import S3_SCHEME, LocalObjects, Objects
from service.s3_objects import S3Objects

POINTER = "ACTIVE"
STORE_ID = "STORE_ID"
"""Names the store with a random id, written once: a job carries the API's, so a worker on
another store (a relative ATNL_MODEL_STORE, a missing volume, another bucket) refuses it at
once, and a replica notices when the store it follows was replaced."""
DATASETS_DIR = "datasets"
"""Folder of the store holding uploaded data sets (``service.dataset_store``); not a model: no model.json."""
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Model ids are folder names: no path separators, no leading dot (temporary folders start with one)."""
PARTIAL = ".{model_id}.tmp-*"
"""What a checkpoint being written to a directory store is called until its rename
(``models.checkpoint.save_checkpoint``'s temporary directory); never listed, and left behind
only by a writer killed inside the write."""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def _json_object(data: bytes | None) -> dict[str, Any]:
    """``data`` as a JSON object, or {} when it is missing or not one (a broken or hand-edited
    model.json must not break listing the others)."""
    if data is None:
        return {}
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def new_model_id(family: str) -> str:
    """``<family>-<UTC time>-<random>``: sorts by creation time, unique across workers."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{family}-{stamp}-{secrets.token_hex(3)}"


class ModelStore:
    def __init__(self, location: str | Path | Objects, cache: Path | None = None) -> None:
        """``location``: a directory, ``s3://BUCKET/PREFIX``, or an ``Objects``; ``cache``: where an
        S3 store's checkpoints are downloaded to and staged (ATNL_MODEL_CACHE)."""
        self.objects = location if isinstance(location, Objects) else open_objects(str(location))
        self.cache = Path(cache) if cache is not None else Path("var/cache")

    @property
    def url(self) -> str:
        """The store as logs and GET /v1/models show it (``local`` for a directory: no server path)."""
        return self.objects.url

    @property
    def root(self) -> Path:
        """The directory of a directory store (AttributeError for S3, whose checkpoints have no one place)."""
        local = self.objects.local_root()
        if local is None:
            raise AttributeError(f"the store {self.url} is not a directory")
        return local

    def ensure(self) -> ModelStore:
        self.objects.ensure()
        return self

    def store_id(self) -> str:
        """This store's id, created on first use (exclusively: concurrent processes, on any host, agree)."""
        self.ensure()
        candidate = secrets.token_hex(8)
        if self.objects.create(STORE_ID, (candidate + "\n").encode()):
            return candidate
        text = (self.objects.read(STORE_ID) or b"").decode(errors="replace").strip()
        if not text:
            raise ModelNotFound(f"the store {self.url} has an empty {STORE_ID}")
        return text

    def path(self, model_id: str) -> Path:
        """Directory of ``model_id`` in a directory store; InvalidInput for ids that are not plain names."""
        return self.root / self.checked(model_id)

    @staticmethod
    def checked(model_id: str) -> str:
        if not MODEL_ID.match(model_id):
            raise InvalidInput(f"invalid model id {model_id!r}")
        return model_id

    def checkpoint(self, model_id: str) -> Path:
        """A local directory holding the checkpoint, or ModelNotFound: the store's own folder for a
        directory store, else this process's verified copy in the cache (downloaded once)."""
        self.checked(model_id)
        local = self.objects.local_root()
        if local is not None:
            if not (local / model_id / META).is_file():
                raise ModelNotFound(f"no model {model_id!r} in the store")
            return local / model_id
        meta = self.objects.read(f"{model_id}/{META}")
        if meta is None:
            raise ModelNotFound(f"no model {model_id!r} in the store")
        digest = str(_json_object(meta).get("content_hash", "")).removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ModelNotFound(f"model {model_id!r} has no content hash in its {META}")
        target = self.cache / "models" / model_id / digest
        if (target / META).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
            weights = Path(tmp) / WEIGHTS
            if not self.objects.download(f"{model_id}/{WEIGHTS}", weights):
                raise ModelNotFound(f"model {model_id!r} has no {WEIGHTS} in the store")
            if file_sha256(weights) != digest:
                raise ModelNotFound(f"model {model_id!r}: the downloaded {WEIGHTS} does not match its content hash")
            (Path(tmp) / META).write_bytes(meta)
            with contextlib.suppress(FileExistsError, OSError):  # another request of this process made it meanwhile
                Path(tmp).rename(target)
        return target

    def exists(self, model_id: str) -> bool:
        """Whether ``model_id`` is a complete checkpoint of this store."""
        return bool(MODEL_ID.match(model_id)) and self.objects.exists(f"{model_id}/{META}")

    @contextlib.contextmanager
    def writing(self, model_id: str) -> Iterator[Path]:
        """The directory to save ``model_id``'s checkpoint to (``models.checkpoint.save_checkpoint``),
        published only when the block ends without an error: for a directory store, renamed into
        place from a temporary folder of the store; for S3, staged in the cache and uploaded,
        weights first and model.json last (a partial upload is removed)."""
        self.checked(model_id)
        local = self.objects.local_root()
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.tmp-", dir=local))  # PARTIAL until renamed
            try:
                yield tmp / model_id
                os.rename(tmp / model_id, local / model_id)  # fails if the id is taken: ids are unique
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        staging = self.cache / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{model_id}-", dir=staging) as staged:
            out = Path(staged) / model_id
            yield out
            try:
                self.objects.upload_tree(out, model_id, last=META)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.remove_partial(model_id)
                raise
            # The writer's own copy becomes its cache entry: it need not download what it made.
            digest = str(_json_object((out / META).read_bytes()).get("content_hash", "")).removeprefix("sha256:")
            target = self.cache / "models" / model_id / digest
            if digest and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.move(out, target)

    def remove_partial(self, model_id: str) -> list[str]:
        """Delete what a writer killed inside its write left of ``model_id`` (a temporary directory;
        on S3 a prefix without model.json); returns what was removed. Call it only once that
        writer is known to be dead (its job failed or lost): a live one would lose its checkpoint."""
        self.checked(model_id)  # the pattern below must stay inside the store
        local = self.objects.local_root()
        if local is not None:
            removed = []
            for tmp in local.glob(PARTIAL.format(model_id=model_id)):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp.name)
            return removed
        if self.objects.exists(f"{model_id}/{META}"):
            return []
        keys = [k.key for k in self.objects.keys(model_id)]
        self.objects.delete(keys)
        return keys

    def _complete(self) -> list[tuple[str, dict[str, Any]]]:
        """(id, model.json) of every complete checkpoint, oldest first by created_at."""
        found = {name: self._meta(name) for name in self.objects.children("") if MODEL_ID.match(name)}
        complete = {name: meta for name, meta in found.items() if meta is not None}
        order = sorted(complete, key=lambda name: (str(complete[name].get("created_at", "")), name))
        return [(name, complete[name]) for name in order]

    def ids(self) -> list[str]:
        """Ids of every complete checkpoint, oldest first by created_at."""
        return [name for name, _ in self._complete()]

    def _meta(self, model_id: str) -> dict[str, Any] | None:
        """model.json of ``model_id`` as an object ({} when unreadable), None when there is none."""
        data = self.objects.read(f"{model_id}/{META}")
        return None if data is None else _json_object(data)

    def describe(self, model_id: str) -> dict[str, Any]:
        """id, family, dataset, labels, image shape, preprocessing, created_at and metrics from
        model.json (None / [] / {} where unreadable)."""
        meta = self._meta(self.checked(model_id))
        if meta is None:
            raise ModelNotFound(f"no model {model_id!r} in the store")
        return self._described(model_id, meta)

    @staticmethod
    def _described(model_id: str, meta: dict[str, Any]) -> dict[str, Any]:
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
        return [self._described(name, meta) for name, meta in self._complete()]

    @staticmethod
    def pointed(data: bytes | None) -> str | None:
        """The model id an ACTIVE pointer's bytes name (None for none or garbage)."""
        text = (data or b"").decode(errors="replace").strip()
        return text if MODEL_ID.match(text) else None

    def active_id(self) -> str | None:
        """The id the pointer names, if it names an existing checkpoint."""
        model_id = self.pointed(self.objects.read(POINTER))
        return model_id if model_id and self.exists(model_id) else None

    def set_active(self, model_id: str) -> None:
        """Point ACTIVE at ``model_id``, atomically (one whole-object write)."""
        if not self.exists(self.checked(model_id)):
            raise ModelNotFound(f"no model {model_id!r} in the store")
        self.objects.write(POINTER, (model_id + "\n").encode())

    def default_id(self) -> str | None:
        """What to serve: the active model, else the newest checkpoint, else None."""
        active = self.active_id()
        if active is not None:
            return active
        ids = self.ids()
        return ids[-1] if ids else None


def open_objects(location: str) -> Objects:
    """The backend ``location`` names: ``s3://BUCKET[/PREFIX]`` or a directory."""
    if location.startswith(S3_SCHEME):
        bucket, _, prefix = location[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"{location!r}: an S3 store is s3://BUCKET or s3://BUCKET/PREFIX")
        return S3Objects(bucket, prefix)
    return LocalObjects(Path(location))


def open_store(settings: Any) -> ModelStore:
    """The model store ``settings`` name (ATNL_MODEL_STORE, with ATNL_MODEL_CACHE for S3)."""
    return ModelStore(settings.model_store, settings.model_cache)
