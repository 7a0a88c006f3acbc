"""The S3 backend of the model store (``ATNL_MODEL_STORE=s3://BUCKET/PREFIX``; service.objects
says what every backend promises). Any S3-compatible server through boto3: the endpoint and
credentials come from the standard ``AWS_*`` variables."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.objects import S3_SCHEME, TRANSFER_THREADS, Listed, Objects, StoreUnavailable, Tagged, check_key

S3_TIMEOUT_SECONDS = 5.0
"""Connect and read timeout of one S3 call; a store that is down fails fast rather than hanging requests."""
S3_ATTEMPTS = 3
"""Tries of one S3 call (botocore's standard retry mode: throttling and 5xx, with backoff)."""


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
