"""Many hosts (docs/API.md §6, docs/DEPLOYMENT.md): a real S3 server, Redis, one worker and two
``atnl serve`` replicas as real processes, each with its own working directory and cache, sharing
nothing on disk. The first start trains one default model; activations reach every replica (over
Redis in under a second, by polling ACTIVE while Redis is down); a model pin answers 409 after a
swap; a replica killed leaves the other serving; with S3 down both keep serving their loaded
model and training answers 503, and both recover when it returns."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.servers import Process, Server, wait_until
from service.store import ModelStore
from tests.service.archives import bar_members, zip_of
from tests.service.e2e_stack import TIMEOUT
from tests.service.helpers import S3_BUCKET, RedisServer, S3Server, TcpProxy, assert_problem
from tests.service.images import png_of

pytestmark = pytest.mark.e2e
POLL_SECONDS = 1.0
"""The replicas' ATNL_STORE_POLL_SECONDS: how late a swap may reach a replica while Redis is down."""
TINY = {"epochs": 1, "latent_dim": 8, "seed": 0}
"""The bootstrap's and the job's training: real, and seconds long."""


@dataclass
class Hosts:
    s3: TcpProxy
    """The replicas' and the worker's way to the S3 server: stopped, S3 is down as they see it."""
    redis: RedisServer
    worker: Process
    replicas: list[Server]
    location: str
    work: Path

    def models(self, k: int) -> dict:
        return httpx.get(f"{self.replicas[k].url}/v1/models", timeout=10).json()

    def serving(self, k: int) -> str | None:
        return self.models(k)["replica"]["loaded"]

    def store(self) -> ModelStore:
        return ModelStore(self.location, self.work / "test-cache")


@contextlib.contextmanager
def many_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hosts]:
    for name in ("s3", "redis", "worker-host", "api-a", "api-b"):  # a directory each: nothing shared
        (tmp_path / name).mkdir()
    s3, redis = S3Server(tmp_path / "s3"), RedisServer(tmp_path / "redis")
    proxy = TcpProxy(s3.port)
    location = f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"
    for name, value in s3.store_env(location).items():
        monkeypatch.setenv(name, value)  # this process's view of the store: straight to the server
    common = {
        **s3.store_env(location),
        "AWS_ENDPOINT_URL": proxy.url,
        "ATNL_REDIS_URL": redis.url,
        "ATNL_STORE_POLL_SECONDS": str(POLL_SECONDS),
        "ATNL_PROGRESS_INTERVAL_SECONDS": "0.5",
        "ATNL_BOOTSTRAP_TRAIN": json.dumps(TINY),
        "ATNL_LOG_LEVEL": "info",
    }
    host = tmp_path / "worker-host"
    worker = Process.worker({**common, "ATNL_MODEL_CACHE": str(host / "cache")}, host)
    replicas = [
        Server.serve(
            {
                **common,
                "ATNL_MODEL_CACHE": str(host / "cache"),
                "ATNL_BOOTSTRAP_DEFAULT_MODEL": "true",
                "ATNL_REPLICA_ID": host.name,
            },
            host,
            name=host.name,
        )
        for host in (tmp_path / "api-a", tmp_path / "api-b")
    ]
    try:
        s3.start()
        proxy.start()
        redis.start()
        worker.start()
        for replica in replicas:  # both start on the empty bucket at once: Process.start does not wait
            Process.start(replica)
        for replica in replicas:
            wait_until(lambda r=replica: _ready(r), f"{replica.name} ready; logs in {tmp_path}", TIMEOUT)
        yield Hosts(proxy, redis, worker, replicas, location, tmp_path)
    finally:
        for p in (*replicas, worker, redis, s3):
            p.stop(timeout=15)
        proxy.stop()


def _ready(server: Server) -> bool:
    if server.exited() is not None:
        raise RuntimeError(f"{server.name} exited with {server.exited()}: {server.log_tail()}")
    try:
        return httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def reaches(hosts: Hosts, k: int, model_id: str, within: float) -> float:
    """Seconds until replica ``k`` serves ``model_id``; fails past ``within``."""
    start = time.monotonic()
    wait_until(lambda: hosts.serving(k) == model_id, f"replica {k} to serve {model_id}", within, every=0.05)
    return time.monotonic() - start


ONE = np.zeros((28, 28), np.float32)
ONE[5:23, 13:16] = 1.0  # a stroke: a "1"


def encode(url: str, **form: str) -> httpx.Response:
    files = {"files": ("a.png", png_of(ONE), "image/png")}
    return httpx.post(f"{url}/v1/encode", files=files, data=form, timeout=30)


def train(url: str) -> str:
    r = httpx.post(f"{url}/v1/train", json={**TINY, "activate": True}, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def finished(url: str, job_id: str) -> dict:
    def done() -> dict | None:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] not in ("failed", "stopped", "canceled"), job
        return job if job["status"] == "finished" else None

    return wait_until(done, f"job {job_id} to finish", TIMEOUT)


def test_replicas_on_one_bucket_share_one_model_and_follow_every_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with many_hosts(tmp_path, monkeypatch) as hosts:
        a, b = (r.url for r in hosts.replicas)
        # One bootstrap: both serve the one default model; one of them trained it.
        first = hosts.serving(0)
        assert first is not None and hosts.serving(1) == first
        assert hosts.store().ids() == [first]
        trained = [r.name for r in hosts.replicas if "atnl.bootstrap: empty model store" in r.log_tail(10**6)]
        assert len(trained) == 1, trained
        listing = hosts.models(1)
        assert listing["replica"] == {"id": "api-b", "loaded": first, "store": hosts.location,
                                      "store_id": hosts.store().store_id(), "following": True}  # fmt: skip
        for host in ("api-a", "api-b"):  # each loaded it from its own cache
            assert [p.name for p in (tmp_path / host / "cache" / "models").iterdir()] == [first]

        # A job with activate: true, submitted to A, reaches B.
        second = finished(a, train(a))["model_id"]
        assert second != first
        reaches(hosts, 1, second, 10)
        reaches(hosts, 0, second, 10)

        # A data set uploaded through B lives in the bucket: a worker with its own cache trains on it.
        archive = zip_of(bar_members(["5", "10", "20"], per_label=12))
        r = httpx.post(f"{b}/v1/datasets", files={"archive": ("bars.zip", archive, "application/zip")}, timeout=60)
        assert r.status_code == 201, r.text
        dataset = r.json()
        assert httpx.get(f"{a}/v1/datasets/{dataset['id']}", timeout=10).json()["labels"] == ["5", "10", "20"]
        r = httpx.post(f"{a}/v1/train", json={**TINY, "dataset": f"upload:{dataset['id']}", "batch_size": 12}, timeout=30)
        assert r.status_code == 202, r.text
        on_upload = finished(a, r.json()["job_id"])["model_id"]
        assert hosts.store().describe(on_upload)["labels"] == ["5", "10", "20"] and hosts.serving(0) == second
        assert (tmp_path / "worker-host" / "cache" / "datasets" / dataset["id"] / "labels.txt").is_file()

        # An activation through B reaches A within 5 s (announced over Redis: well under a second).
        r = httpx.post(f"{b}/v1/models/{first}/activate", json={}, timeout=60)
        assert r.status_code == 200, r.text
        over_redis = reaches(hosts, 0, first, 5)
        print(f"activation through replica B seen by replica A after {over_redis:.2f} s (Redis up)")
        assert over_redis < 1.5, over_redis

        # A pin on the model swapped away gets 409 naming the one served; the served one works.
        body = assert_problem(encode(a, model_id=second), 409, first)
        assert body["active"] == first and body["requested"] == second
        assert encode(a, model_id=first).status_code == 200
        decode = httpx.post(f"{b}/v1/decode", params={"model_id": second}, json={"latents": [[1.0] + [0.0] * 7]}, timeout=30)
        assert_problem(decode, 409, first)

        # Redis stopped: a swap still reaches the other replica, within the poll interval.
        hosts.redis.stop()
        r = httpx.post(f"{a}/v1/models/{second}/activate", json={}, timeout=60)
        assert r.status_code == 200, r.text
        by_polling = reaches(hosts, 1, second, POLL_SECONDS + 4)
        print(f"activation through replica A seen by replica B after {by_polling:.2f} s (Redis down, poll {POLL_SECONDS} s)")
        assert by_polling <= POLL_SECONDS + 4
        hosts.redis.start()

        # S3 stopped: both keep serving the model they hold; training answers 503; both recover.
        hosts.s3.stop()
        for url in (a, b):
            assert encode(url).json()["model_id"] == second
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert_problem(httpx.post(f"{a}/v1/train", json=TINY, timeout=60), 503, "store")
        hosts.s3.start()
        r = httpx.post(f"{b}/v1/models/{first}/activate", json={}, timeout=60)
        assert r.status_code == 200, r.text
        reaches(hosts, 0, first, 5)

        # A replica SIGKILLed: the other goes on serving.
        hosts.replicas[0].stop(signal.SIGKILL, timeout=5)
        assert encode(b).json()["model_id"] == first
        assert httpx.get(f"{b}/readyz", timeout=10).status_code == 200
