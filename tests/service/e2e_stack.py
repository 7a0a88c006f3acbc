"""The end-to-end stack the e2e tests share: `atnl worker` and `atnl serve` as real processes,
started with the commands written in docker-compose.yml, on a Redis database of their own and
an empty model store; and the client side that follows a training job to its end."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml
from redis import Redis

from benchmarks.servers import Process, Server, atnl_command, wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240.0
"""Seconds a job may take to reach the awaited state on a loaded 2-core machine."""


def compose_args(service: str) -> list[str]:
    """The arguments of ``atnl`` in the service's command in docker-compose.yml."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]["command"]
    assert command[0] == "atnl", command
    return command[1:]


class Stack:
    def __init__(self, http: httpx.Client, logs: Path) -> None:
        self.http = http
        self.logs = logs

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def job_reaches(self, job_id: str, statuses: set[str], seen: list | None = None) -> dict:
        def done():
            job = self.job(job_id)
            if seen is not None and job["progress"]:
                seen.append(job["progress"])
            return job if job["status"] in statuses else None

        return wait_until(done, f"job {job_id} to reach {statuses}; logs in {self.logs}", TIMEOUT)


@contextlib.contextmanager
def running_stack(redis_url: str, tmp: Path) -> Iterator[Stack]:
    """A worker and an API on database 1 of ``redis_url`` (other tests flush theirs), emptied
    first (an earlier stack's jobs are not this one's), and the empty store ``tmp/store`` (no
    default training: not ready until a model is trained), with ``tmp/data`` the one data root;
    their logs in ``tmp``."""
    url = redis_url.rsplit("/", 1)[0] + "/1"
    with Redis.from_url(url) as conn:
        conn.flushdb()
    env = {
        "ATNL_REDIS_URL": url,
        "ATNL_MODEL_STORE": str(tmp / "store"),
        "ATNL_STORE_POLL_SECONDS": "0.5",
        "ATNL_PROGRESS_INTERVAL_SECONDS": "0.5",
        "ATNL_DATA_ROOTS": json.dumps([str(tmp / "data")]),
    }
    worker = Process.worker(env, tmp)
    worker.args = atnl_command(*compose_args("worker"))
    api = Server.serve(env, tmp, ready_path="/healthz")
    api.args = atnl_command(*compose_args("api"))
    try:
        worker.start()
        api.start(timeout=90)
        assert worker.exited() is None, f"atnl worker exited with {worker.exited()}: {worker.log_tail()}"
        with httpx.Client(base_url=api.url, timeout=30) as http:
            yield Stack(http, tmp)
    finally:
        api.stop(timeout=15)
        worker.stop(timeout=15)
