"""Faults with real processes (issue 11, item 7): an `atnl worker` SIGKILLed mid-training leaves
no job hanging "started" and no partial checkpoint, and a retry succeeds."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
HEARTBEAT_TTL = 6.0
"""Seconds without a heartbeat after which a started job counts as lost (short, for the test)."""
TIMEOUT = 180.0
"""Seconds a state may take to be reached on a loaded 2-core machine."""


def start_worker(settings, logs: Path, *args: str) -> subprocess.Popen:
    exe = shutil.which("atnl", path=str(Path(sys.executable).parent)) or "atnl"
    env = {
        **os.environ,
        "ATNL_REDIS_URL": settings.redis_url,
        "ATNL_MODEL_STORE": str(settings.model_store),
        "ATNL_DEVICE": "cpu",
        "ATNL_JOB_HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL),
        "ATNL_PROGRESS_INTERVAL_SECONDS": "0.5",
    }
    with open(logs, "a") as log:  # the child keeps its own copy of the descriptor
        # Its own process group: SIGKILL to the group takes the RQ parent and its work horse at once.
        return subprocess.Popen([exe, "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_worker_and_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse (RQ puts the horse in a process group of its own),
    as when the machine or container dies."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    horses = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    worker.kill()  # the parent first: alive, it would see its horse die and record the failure itself
    worker.wait(timeout=30)
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    for pid in horses:  # reap-free check: a killed horse is gone or a zombie of the dead parent
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
            assert time.monotonic() < deadline, f"work horse {pid} survived SIGKILL"
            time.sleep(0.05)


async def wait_for_job(client, job_id: str, done, what: str, timeout: float = TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if done(job):
            return job
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}: {job}")


async def test_a_worker_killed_mid_training_fails_its_job_and_a_retry_succeeds(
    settings, redis_conn, tmp_path, client_factory
) -> None:
    api = settings.model_copy(update={"job_heartbeat_ttl_seconds": HEARTBEAT_TTL})
    logs = tmp_path / "worker.log"
    async for client in client_factory(api):
        job_id = (await client.post("/v1/train", json={"epochs": 200, "latent_dim": 8})).json()["job_id"]
        doomed_model = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).kwargs["model_id"]
        worker = start_worker(api, logs)
        try:
            await wait_for_job(
                client, job_id, lambda j: (j["progress"] or {}).get("phase") == "training", f"training to start ({logs})"
            )
            kill_worker_and_horse(worker)
            killed_at = time.monotonic()
            job = await wait_for_job(client, job_id, lambda j: j["status"] != "started", "the lost job to be failed")
            took = time.monotonic() - killed_at
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        # Our heartbeat check (WorkerLost) or RQ's own abandoned-job cleanup, whichever looks first.
        assert job["status"] == "failed" and ("WorkerLost" in job["error"] or "killed" in job["error"]), job
        assert took < HEARTBEAT_TTL + 6, f"lost job reported after {took:.1f} s"
        assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "failed"  # recorded, not just shown
        assert not (api.model_store / doomed_model).exists()
        assert [p.name for p in api.model_store.iterdir() if p.name.startswith(".") and p.is_dir()] == []

        retry_id = (await client.post("/v1/train", json={"epochs": 1, "latent_dim": 8})).json()["job_id"]
        worker = start_worker(api, logs, "--burst")
        try:
            job = await wait_for_job(client, retry_id, lambda j: j["status"] in ("finished", "failed"), "the retry")
        finally:
            if worker.poll() is None:
                kill_worker_and_horse(worker)
        assert job["status"] == "finished", (job, logs.read_text()[-2000:])
        listed = [m["id"] for m in (await client.get("/v1/models")).json()["models"]]
        assert job["model_id"] in listed and doomed_model not in listed
