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
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from service.errors import ServiceError

S3_SCHEME = "s3://"
S3_TIMEOUT_SECONDS = 5.0
"""Connect and read timeout of one S3 call; a store that is down fails fast rather than hanging requests."""
S3_ATTEMPTS = 3
"""Tries of one S3 call (botocore's standard retry mode: throttling and 5xx, with backoff)."""
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


class S3Objects(Objects):
    """Keys under ``s3://bucket/prefix`` of an S3-compatible server."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"{S3_SCHEME}{bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{bucket}"
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:  # boto3 clients are thread-safe; making one is not
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=S3_TIMEOUT_SECONDS,
                    read_timeout=S3_TIMEOUT_SECONDS,
                    retries={"mode": "standard", "max_attempts": S3_ATTEMPTS},
                    max_pool_connections=TRANSFER_THREADS * 2,
                )
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                self._client = boto3.session.Session().client("s3", config=config, region_name=region)
            return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Map the server's or the network's failure to StoreUnavailable (a 503 that says what failed)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            raise StoreUnavailable(f"model store {self.url}: {what} failed: {_code(e)} {e}") from e
        except BotoCoreError as e:  # connection refused, timeouts, no credentials
            raise StoreUnavailable(f"model store {self.url}: {what} failed: {e}") from e

    def ensure(self) -> S3Objects:
        from botocore.exceptions import ClientError

        with self._calls(f"creating bucket {self.bucket}"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                with contextlib.suppress(ClientError):  # another replica made it meanwhile
                    self.client.create_bucket(Bucket=self.bucket)
                self.client.head_bucket(Bucket=self.bucket)
        return self

    def _get(self, key: str, **conditions: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), **conditions)
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            if _code(e) in ("304", "NotModified"):
                return False
            raise

    def read(self, key: str) -> bytes | None:
        with self._calls(f"reading {key}"):
            answer = self._get(key)
            return None if not answer else bytes(answer["Body"].read())

    def read_if_changed(self, key: str, tag: str | None) -> Tagged:
        with self._calls(f"reading {key}"):
            answer = self._get(key, **({"IfNoneMatch": tag} if tag else {}))
            if answer is False:
                return Tagged(False, None, tag)
            if answer is None:
                return Tagged(tag is not None, None, None)
            return Tagged(True, bytes(answer["Body"].read()), str(answer["ETag"]))

    def write(self, key: str, data: bytes) -> None:
        with self._calls(f"writing {key}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._calls(f"creating {key}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except ClientError as e:
                if _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    return False
                raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._calls(f"looking for {key}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except ClientError as e:
                if _code(e) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

    def delete(self, keys: Iterable[str]) -> None:
        names = [{"Key": self._key(k)} for k in keys]
        with self._calls("deleting"):
            for start in range(0, len(names), 1000):  # the most one DeleteObjects takes
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": names[start : start + 1000], "Quiet": True})

    def _pages(self, prefix: str, **extra: str) -> Iterator[dict[str, Any]]:
        folder = self._key(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        yield from self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder, **extra)

    def children(self, prefix: str) -> list[str]:
        with self._calls(f"listing {prefix or 'the store'}"):
            names = [cp["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in self._pages(prefix, Delimiter="/")
                     for cp in page.get("CommonPrefixes", [])]  # fmt: skip
        return sorted(n for n in names if not n.startswith("."))

    def keys(self, prefix: str) -> list[Listed]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        now = time.time()
        with self._calls(f"listing {prefix}"):
            return [
                Listed(obj["Key"][strip:], now - obj["LastModified"].timestamp())
                for page in self._pages(prefix)
                for obj in page.get("Contents", [])
            ]

    def upload(self, path: Path, key: str) -> None:
        with self._calls(f"uploading {key}"):
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def download(self, key: str, path: Path) -> bool:
        data = self.read(key)  # one GET: small files, and a missing key is no exception
        if data is None:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return True


def _code(e: Any) -> str:
    error = getattr(e, "response", {}).get("Error", {})
    return str(error.get("Code", ""))


def open_objects(location: str) -> Objects:
    """The backend ``location`` names: ``s3://BUCKET[/PREFIX]`` or a directory."""
    if location.startswith(S3_SCHEME):
        bucket, _, prefix = location[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"{location!r}: an S3 store is s3://BUCKET or s3://BUCKET/PREFIX")
        return S3Objects(bucket, prefix)
    return LocalObjects(Path(location))
