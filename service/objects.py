"""Where the model store keeps its bytes: a local directory or an S3 bucket, behind one interface.

``ATNL_MODEL_STORE`` is a directory (the embedded default) or ``s3://BUCKET/PREFIX``: any
S3-compatible server (AWS S3, MinIO, Ceph RGW, SeaweedFS) through boto3, with the endpoint
and credentials from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

Keys are ``/``-separated names relative to the store. What both backends promise, and what
``tests/service/test_store_contract.py`` checks against each (a real S3 server included):

- ``read`` gives the bytes last written, or None; ``read_if_changed`` answers "unchanged"
  without the body when the caller's tag (an ETag, a file's mtime and size) still holds;
- ``write`` replaces a key whole (readers see the old bytes or the new ones, never half);
- ``create`` writes a key only if it does not exist (``If-None-Match: *`` on S3, a hard link
  on a directory): of racing creators exactly one wins, across hosts on S3;
- ``children`` lists the folders directly under a prefix, ``keys`` every key under it with
  its age; ``delete`` removes keys (missing ones are no error).

A backend that cannot be reached raises ``StoreUnavailable`` (503): the API keeps serving the
model it has loaded, and what needs the store answers 503 until it is back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from service.errors import ServiceError

S3_SCHEME = "s3://"
TRANSFER_THREADS = 8
"""Files uploaded or downloaded at once (a data set has thousands of small images)."""
STORE_RETRY_AFTER_SECONDS = 5


class StoreUnavailable(ServiceError):
    """The model store cannot be reached (an S3 server down or refusing): inference goes on with the loaded model."""

    status = 503
    title = "Model store unavailable"
    documented_headers: ClassVar[dict[str, str]] = {"Retry-After": "Seconds to wait before trying again."}

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}


class Tagged(NamedTuple):
    """A conditional read: ``changed`` False means the caller's tag still holds (``data`` is then None)."""

    changed: bool
    data: bytes | None
    tag: str | None


class Listed(NamedTuple):
    key: str
    age_seconds: float


def check_key(key: str) -> str:
    """``key`` if it is a plain relative name (no empty, ``.`` or ``..`` parts): a key never leaves the store."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"not a store key: {key!r}")
    return key


class Objects(ABC):
    """The bytes of one model store."""

    url: str
    """What logs and GET /v1/models show of the store: ``s3://bucket/prefix``, or ``local`` (no server path)."""

    def ensure(self) -> Objects:
        """Make the store usable (the directory, the bucket); idempotent."""
        return self

    def local_root(self) -> Path | None:
        """The store's own directory when it is one (checkpoints are read in place), else None."""
        return None

    @abstractmethod
    def read(self, key: str) -> bytes | None: ...

    @abstractmethod
    def read_if_changed(self, key: str, tag: str | None) -> Tagged: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist; whether this call created it."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None: ...

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """Names of the folders directly under ``prefix`` ("" for the top)."""

    @abstractmethod
    def keys(self, prefix: str) -> list[Listed]:
        """Every key under the folder ``prefix``, with its age."""

    @abstractmethod
    def upload(self, path: Path, key: str) -> None: ...

    @abstractmethod
    def download(self, key: str, path: Path) -> bool:
        """Copy ``key`` to the file ``path``; False when there is no such key."""

    def upload_tree(self, folder: Path, prefix: str, last: str) -> None:
        """Every file under ``folder`` to ``prefix/…``, the one named ``last`` after all the others:
        a reader that finds ``last`` finds everything (what makes a write safe on S3)."""
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        rest = [p for p in files if p.relative_to(folder).as_posix() != last]
        parallel(lambda p: self.upload(p, f"{prefix}/{p.relative_to(folder).as_posix()}"), rest)
        self.upload(folder / last, f"{prefix}/{last}")

    def download_tree(self, prefix: str, folder: Path, last: str) -> None:
        """Every key under ``prefix`` into ``folder``, the one named ``last`` after the others."""
        keys = [k.key for k in self.keys(prefix)]
        rel = [k[len(prefix) + 1 :] for k in keys]
        parallel(lambda r: self.download(f"{prefix}/{r}", folder / r), [r for r in rel if r != last])
        if not self.download(f"{prefix}/{last}", folder / last):
            raise FileNotFoundError(f"{self.url}: {prefix}/{last} is gone")


def parallel(fn: Any, items: list[Any]) -> None:
    """``fn`` over ``items`` on TRANSFER_THREADS threads; the first error is raised."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(min(TRANSFER_THREADS, len(items))) as pool:
        for _ in pool.map(fn, items):
            pass


def file_tag(path: Path) -> str | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"


class LocalObjects(Objects):
    """A directory: keys are files under it."""

    url = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> LocalObjects:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def local_root(self) -> Path:
        return self.root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def read_if_changed(self, key: str, tag: str | None) -> Tagged:
        path = self._path(key)
        now = file_tag(path)
        if now is not None and now == tag:
            return Tagged(False, None, tag)
        data = self.read(key)
        return Tagged(tag is not None or data is not None, data, file_tag(path) if data is not None else None)

    def _temporary(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_bytes(data)
        return tmp

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._temporary(path, data), path)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._temporary(path, data)
        try:
            os.link(tmp, path)  # fails if the key exists; readers never see it empty
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self._path(key).unlink()

    def children(self, prefix: str) -> list[str]:
        folder = self._path(prefix) if prefix else self.root
        try:
            return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def keys(self, prefix: str) -> list[Listed]:
        folder, now = self._path(prefix), time.time()
        found = []
        for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if p.is_file():
                    found.append(Listed(p.relative_to(self.root).as_posix(), now - p.stat().st_mtime))
        return found

    def upload(self, path: Path, key: str) -> None:
        self.write(key, path.read_bytes())

    def download(self, key: str, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), path)
            return True
        except FileNotFoundError:
            return False
