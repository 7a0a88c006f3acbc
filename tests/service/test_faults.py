"""Faults with real processes: redis-server, `atnl serve` and `atnl worker` started,
stopped, restarted and SIGKILLed while they serve and train.

- a worker SIGKILLed mid-training: its job is failed within the heartbeat TTL, no partial
  checkpoint, a retry succeeds;
- a worker (or only its work horse) killed inside the atomic checkpoint write: nothing partial
  is listed or left behind, ACTIVE is untouched;
- Redis stopped and started again while the API serves and a job trains: inference is
  unaffected, the worker lives on and the job finishes;
- the API SIGKILLed and started again: the active model and the job history are kept;
- hot swaps under mixed load (encode, decode, interpolate, hallucinate): no failed request,
  and every answer is exactly what the model it names makes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from rq.job import Job
from rq.serializers import JSONSerializer

from benchmarks.servers import Process, Server, wait_until
from service.store import ModelStore
from tests.service.helpers import RedisServer, assert_problem
from tests.service.images import png_of

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
HEARTBEAT_TTL = 6.0
"""Seconds without a heartbeat after which a started job counts as lost (short, for the test)."""
TIMEOUT = 180.0
"""Seconds a state may take to be reached on a loaded 2-core machine."""
STACK_WAIT = 240.0
"""Seconds for a real process to reach a state (a job's end, a checkpoint write) on a loaded 2-core machine."""
QUICK_JOB = {"family": "ae", "epochs": 2, "latent_dim": 8, "test_fraction": 0.5, "batch_size": 250}
"""A real training job of a few seconds (10 steps an epoch): the cheapest family on half of mnist-5k."""


def start_worker(redis_url: str, store: Path, workdir: Path, *args: str, python: str | None = None) -> Process:
    """`atnl worker ARGS` (or, with ``python``, that script run with the worker's arguments), in
    a process group of its own; its log is ``workdir``/worker.log."""
    env = {"ATNL_REDIS_URL": redis_url, "ATNL_MODEL_STORE": str(store)}
    env |= {"ATNL_JOB_HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL), "ATNL_PROGRESS_INTERVAL_SECONDS": "0.5"}
    worker = Process.worker(env, workdir, *args)
    if python:
        worker.args = [sys.executable, "-c", python, "worker", *args]
    return worker.start()


def horses_of(worker: Process) -> list[int]:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def wait_gone(pid: int) -> None:
    """Until ``pid`` is gone or a zombie (reap-free: its parent may be dead too)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
        assert time.monotonic() < deadline, f"process {pid} survived SIGKILL"
        time.sleep(0.05)


def kill_worker_and_horse(worker: Process) -> None:
    """SIGKILL the worker and its work horse (RQ puts the horse in a process group of its own),
    as when the machine or container dies."""
    horses = horses_of(worker)
    worker.stop(signal.SIGKILL)  # the parent first: alive, it would see its horse die and record the failure itself
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    for pid in horses:
        wait_gone(pid)


def stop_worker(worker: Process) -> None:
    if worker.exited() is None:
        kill_worker_and_horse(worker)


async def wait_for_job(client, job_id: str, done, what: str, timeout: float = TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if done(job):
            return job
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}: {job}")


def training(job: dict) -> bool:
    return (job["progress"] or {}).get("phase") == "training"


def partial_dirs(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.name.startswith(".") and p.is_dir())


async def test_a_worker_killed_mid_training_fails_its_job_and_a_retry_succeeds(
    settings, redis_conn, tmp_path, client_factory
) -> None:
    api = settings.model_copy(update={"job_heartbeat_ttl_seconds": HEARTBEAT_TTL})
    logs = tmp_path / "worker.log"
    async for client in client_factory(api):
        job_id = (await client.post("/v1/train", json={**QUICK_JOB, "epochs": 200})).json()["job_id"]
        doomed_model = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).kwargs["model_id"]
        worker = start_worker(api.redis_url, api.model_store, tmp_path)
        try:
            await wait_for_job(client, job_id, training, f"training to start ({logs})")
            kill_worker_and_horse(worker)
            killed_at = time.monotonic()
            job = await wait_for_job(client, job_id, lambda j: j["status"] != "started", "the lost job to be failed")
            took = time.monotonic() - killed_at
        finally:
            stop_worker(worker)
        # Our heartbeat check (WorkerLost) or RQ's own abandoned-job cleanup, whichever looks first.
        assert job["status"] == "failed" and ("WorkerLost" in job["error"] or "killed" in job["error"]), job
        assert took < HEARTBEAT_TTL + 6, f"lost job reported after {took:.1f} s"
        assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "failed"  # recorded, not just shown
        assert not (api.model_store / doomed_model).exists()
        assert partial_dirs(api.model_store) == []

        retry_id = (await client.post("/v1/train", json={**QUICK_JOB, "epochs": 1})).json()["job_id"]
        worker = start_worker(api.redis_url, api.model_store, tmp_path, "--burst")
        try:
            job = await wait_for_job(client, retry_id, lambda j: j["status"] in ("finished", "failed"), "the retry")
        finally:
            stop_worker(worker)
        assert job["status"] == "finished", (job, logs.read_text()[-2000:])
        listed = [m["id"] for m in (await client.get("/v1/models")).json()["models"]]
        assert job["model_id"] in listed and doomed_model not in listed


STALLED_WRITE = textwrap.dedent(
    """
    # `atnl worker` whose checkpoint writes stop halfway: the weights are in the temporary
    # directory, model.json is not, nothing is renamed yet; the marker file names the process.
    import os, sys, time
    from pathlib import Path
    import models.checkpoint

    real_save_file = models.checkpoint.save_file

    def stalled_save_file(tensors, filename, *args, **kwargs):
        real_save_file(tensors, filename, *args, **kwargs)
        Path(os.environ["STALL_MARKER"]).write_text(f"{os.getpid()} {filename}")
        time.sleep(3600)

    models.checkpoint.save_file = stalled_save_file
    from service.cli.app import main
    sys.argv = ["atnl", *sys.argv[1:]]
    main()
    """
)


async def test_a_crash_inside_the_checkpoint_write_leaves_the_store_intact(
    settings, redis_conn, tmp_path, client_factory, monkeypatch
) -> None:
    """First the work horse alone is killed inside the write (as the OOM killer does: its worker
    records the failure), then worker and horse together (the API finds the job lost)."""
    api = settings.model_copy(update={"job_heartbeat_ttl_seconds": HEARTBEAT_TTL})
    store = ModelStore(api.model_store)
    store.set_active("tiny")
    before = (store.ids(), (api.model_store / "ACTIVE").read_bytes())
    marker = tmp_path / "stalled"
    monkeypatch.setenv("STALL_MARKER", str(marker))
    logs = tmp_path / "worker.log"
    worker = start_worker(api.redis_url, api.model_store, tmp_path, python=STALLED_WRITE)
    try:
        async for client in client_factory(api):
            for kill_parent_too in (False, True):
                marker.unlink(missing_ok=True)
                job_id = (await client.post("/v1/train", json={**QUICK_JOB, "epochs": 1})).json()["job_id"]
                wait_until(marker.exists, f"the job to reach its checkpoint write ({logs})", STACK_WAIT)
                horse, weights = marker.read_text().split()
                assert Path(weights).parent.name.startswith(".") and Path(weights).is_file()  # mid-write
                if kill_parent_too:
                    kill_worker_and_horse(worker)
                else:
                    os.kill(int(horse), signal.SIGKILL)
                job = await wait_for_job(client, job_id, lambda j: j["status"] != "started", "the job to be failed")
                assert job["status"] == "failed", job
                assert ("WorkerLost" if kill_parent_too else "terminated unexpectedly") in job["error"], job
                assert "no model was written" in job["error"] or not kill_parent_too, job
                assert (store.ids(), (api.model_store / "ACTIVE").read_bytes()) == before
                assert partial_dirs(api.model_store) == [], "a partial checkpoint was left in the store"
                listing = (await client.get("/v1/models")).json()
                assert [m["id"] for m in listing["models"]] == before[0] and listing["active"] == "tiny"
                assert worker.exited() is None or kill_parent_too  # the worker outlives its horse
    finally:
        stop_worker(worker)


def test_a_job_ending_while_redis_is_away_records_its_end_once_it_is_back(tmp_path: Path) -> None:
    """The end of a job (its model already in the store) outlives a Redis restart at that moment."""
    from redis import Redis
    from rq import Queue

    from service.training.tasks import JobChannel

    redis = RedisServer(tmp_path, persistent=True).start()
    conn = Redis.from_url(redis.url)
    restart = threading.Timer(2.0, redis.start)
    try:
        job = Queue("t", connection=conn, serializer=JSONSerializer).enqueue("builtins.print", meta={"progress": None})
        channel = JobChannel(Job.fetch(job.id, connection=conn, serializer=JSONSerializer), progress_interval=0)
        redis.stop()
        restart.start()
        channel.finished("model-x")  # waits for Redis instead of raising
        assert Job.fetch(job.id, connection=conn, serializer=JSONSerializer).get_meta()["model_id"] == "model-x"
    finally:
        if restart.is_alive():
            restart.join()
        conn.close()
        redis.stop()


def variant_of(checkpoint: Path, out: Path, seed: int = 1) -> Path:
    """A copy of ``checkpoint`` with every weight perturbed: same shapes and labels, other outputs."""
    import torch

    from models import load_checkpoint
    from models.checkpoint import save_checkpoint

    model = load_checkpoint(checkpoint)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.5 * torch.randn(p.shape, generator=gen))
    return save_checkpoint(model, dict(model.meta), out)


@dataclass
class Stack:
    """Redis (persistent), `atnl serve` and `atnl worker` on one store holding ``tiny`` (active) and ``tiny-b``."""

    tmp: Path
    redis: RedisServer
    api: Server
    worker: Process
    http: httpx.Client
    jobs: list[str] = field(default_factory=list)
    """Jobs run by the tests of this module, for the API restart test."""

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def job_reaches(self, job_id: str, done: Callable[[dict], bool], what: str) -> dict:
        return wait_until(lambda: (job := self.job(job_id)) and done(job) and job, f"{what} (logs in {self.tmp})", STACK_WAIT)

    def worker_log(self) -> str:
        return self.worker.log.read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    redis = RedisServer(tmp, persistent=True).start()
    store = tmp / "store"
    shutil.copytree(tiny_checkpoint, store / "tiny")
    variant_of(tiny_checkpoint, store / "tiny-b")
    ModelStore(store).set_active("tiny")
    env = {"ATNL_REDIS_URL": redis.url, "ATNL_MODEL_STORE": str(store), "ATNL_STORE_POLL_SECONDS": "0.5"}
    env |= {"ATNL_JOB_HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL), "ATNL_DATA_ROOTS": json.dumps([str(tmp / "data")])}
    api = Server.serve(env, tmp)
    worker = start_worker(redis.url, store, tmp)
    try:
        api.start()
        with httpx.Client(base_url=api.url, timeout=60) as http:
            yield Stack(tmp, redis, api, worker, http)
    finally:
        stop_worker(worker)
        api.stop()
        redis.stop()


def png_array(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32)


def answer(r: httpx.Response) -> tuple[str, np.ndarray]:
    """(model id the answer names, its numbers: latents or pixels, flattened)."""
    assert r.status_code == 200, r.text
    if r.headers["content-type"].startswith("application/json"):
        body = r.json()
        if "latents" in body:
            return body["model_id"], np.asarray(body["latents"], np.float32).ravel() * 255  # on the pixels' scale
        pngs = body.get("frames") or [im["png"] if isinstance(im, dict) else im for im in body["images"]]
        return body["model_id"], np.concatenate([png_array(base64.b64decode(p)).ravel() for p in pngs])
    if r.headers["content-type"] == "application/zip":
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            pngs = [zf.read(n) for n in sorted(zf.namelist()) if n.endswith(".png")]
        return r.headers["x-model-id"], np.concatenate([png_array(p).ravel() for p in pngs])
    return r.headers["x-model-id"], png_array(r.content).ravel()


def mixed_requests(digits) -> dict[str, dict[str, Any]]:
    """One request of each kind and format, on real digits."""
    a, b, c, d = png_of(digits[0][0]), png_of(digits[0][1]), png_of(digits[9][0]), png_of(digits[9][1])
    few = [("files", (f"{k}.png", im, "image/png")) for k, im in enumerate((a, b, c, d))]
    pair = {"start": ("a.png", a, "image/png"), "end": ("c.png", c, "image/png")}
    z = (np.arange(8) % 3 - 1.0) / np.sqrt(6)
    labels = {"labels": "0,0,9,9", "per_class": "1", "seed": "3"}
    return {
        "encode": {"url": "/v1/encode", "files": few[:2]},
        "decode": {"url": "/v1/decode", "json": {"latents": [z.tolist(), (-z).tolist()]}},
        "interpolate-json": {"url": "/v1/interpolate", "files": pair, "data": {"steps": "4"}},
        "interpolate-png": {"url": "/v1/interpolate", "files": pair, "data": {"steps": "4", "format": "png"}},
        "hallucinate-json": {
            "url": "/v1/hallucinate",
            "files": few,
            "data": {"labels": "0,0,9,9", "per_class": "1", "seed": "3", "filter": "none"},  # keep the tiny model's blobs
        },
        "hallucinate-zip": {
            "url": "/v1/hallucinate",
            "files": few,
            "data": {**labels, "format": "zip", "filter": "none"},
        },
    }


TOLERANCE = 2.0
"""Largest difference (grey levels of 255; latents scaled by 255) between two answers of one model
to one request: the same work, perhaps batched with other requests."""


async def test_hot_swaps_under_mixed_load_fail_nothing_and_mix_nothing(stack: Stack, digits) -> None:
    requests = mixed_requests(digits)
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=120) as client:

        async def send(op: str) -> httpx.Response:
            req = requests[op]
            return await client.post(req["url"], **{k: v for k, v in req.items() if k != "url"})

        # What each model answers to each request, asked while it is the only one active.
        reference: dict[str, dict[str, np.ndarray]] = {}
        for model_id in ("tiny-b", "tiny"):
            assert (await client.post(f"/v1/models/{model_id}/activate", json={})).status_code == 200
            reference[model_id] = {}
            for op in requests:
                named, numbers = answer(await send(op))
                assert named == model_id
                reference[model_id][op] = numbers
        for op in requests:  # the two models answer each request differently: a mix would show
            assert np.abs(reference["tiny"][op] - reference["tiny-b"][op]).max() > 10 * TOLERANCE, op

        swaps: list[int] = []
        answers: list[tuple[str, httpx.Response]] = []

        async def user(k: int) -> None:
            ops = list(requests)
            n = 0
            while len(swaps) < 6 or n < len(ops):
                op = ops[(k + n) % len(ops)]
                answers.append((op, await send(op)))
                n += 1

        async def swapper() -> None:
            for target in ["tiny-b", "tiny"] * 3:
                await asyncio.sleep(0.3)
                swaps.append((await client.post(f"/v1/models/{target}/activate", json={})).status_code)

        await asyncio.gather(swapper(), *(user(k) for k in range(4)))

    assert swaps == [200] * 6
    failed = [(op, r.status_code, r.text[:200]) for op, r in answers if r.status_code != 200]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed during hot swaps"
    seen = set()
    for op, r in answers:
        named, numbers = answer(r)
        seen.add(named)
        diff = np.abs(numbers - reference[named][op]).max()
        assert diff <= TOLERANCE, f"{op}: the answer names {named} but differs from its output by {diff:.1f}"
    assert seen == {"tiny", "tiny-b"}, "every answer came from one model: no swap landed under load"
    print(f"hot swap: {len(answers)} requests during 6 swaps, 0 failed, 0 mixed")


async def test_redis_restarted_while_serving_and_training(stack: Stack, digits) -> None:
    http = stack.http
    r = http.post("/v1/train", json=QUICK_JOB)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    stack.jobs.append(job_id)
    stack.job_reaches(job_id, training, "the job to train")
    log_mark = len(stack.worker_log())

    stack.redis.stop()
    down_at = time.monotonic()
    requests = mixed_requests(digits)
    for op in ("encode", "hallucinate-json", "interpolate-png", "decode"):  # inference needs no Redis
        req = requests[op]
        assert http.post(req["url"], **{k: v for k, v in req.items() if k != "url"}).status_code == 200, op
    assert http.get("/readyz").status_code == 200 and http.get("/healthz").status_code == 200
    assert_problem(http.get(f"/v1/jobs/{job_id}"), 503, "Redis")
    assert_problem(http.post("/v1/train", json=QUICK_JOB), 503, "Redis")

    # Down longer than the heartbeat TTL (the job's heartbeat expires) and until the worker's
    # parent has met the outage (its heartbeat, or its state once the job ended).
    def worker_met_outage() -> bool:
        lines = stack.worker_log()[log_mark:].splitlines()
        return any("atnl.worker" in line and "Redis unreachable" in line for line in lines)

    wait_until(lambda: stack.worker.exited() is not None or worker_met_outage(), "the worker to meet the outage", 45)
    time.sleep(max(0.0, HEARTBEAT_TTL + 1 - (time.monotonic() - down_at)))
    stack.redis.start()

    assert stack.worker.exited() is None, f"the worker died with Redis; log: {stack.worker_log()[-3000:]}"
    job = stack.job(job_id)  # a job that lived through the outage is not "lost" while its heartbeat comes back
    assert job["status"] in ("started", "finished"), job
    job = stack.job_reaches(job_id, lambda j: j["status"] not in ("queued", "started"), "the job to end")
    assert job["status"] == "finished", job
    assert job["model_id"] in [m["id"] for m in http.get("/v1/models").json()["models"]]

    # The same worker takes the next job and reports it as usual.
    failing = http.post("/v1/train", json={**QUICK_JOB, "dataset": "folder:no-such-digits"}).json()["job_id"]
    stack.jobs.append(failing)
    job = stack.job_reaches(failing, lambda j: j["status"] in ("failed", "finished"), "the next job to fail")
    assert job["status"] == "failed" and "DatasetError" in job["error"], job
    assert stack.worker.exited() is None


async def test_api_restarted_keeps_the_active_model_and_the_job_history(stack: Stack) -> None:
    http = stack.http
    assert http.post("/v1/models/tiny-b/activate", json={}).status_code == 200
    canceled = http.post("/v1/train", json=QUICK_JOB).json()["job_id"]
    assert http.delete(f"/v1/jobs/{canceled}").status_code == 200
    history = [*stack.jobs, canceled]
    ended = [stack.job_reaches(j, lambda j: j["status"] not in ("queued", "started"), "jobs to end") for j in history]
    models = http.get("/v1/models").json()
    assert models["active"] == "tiny-b"

    stack.api.stop(signal.SIGKILL)
    stack.api.start()

    assert [stack.job(j) for j in history] == ended
    after = http.get("/v1/models").json()
    assert (after["active"], after["models"], after["replica"]["loaded"]) == (models["active"], models["models"], "tiny-b")
    assert http.get("/readyz").json() == {"status": "ok", "model_id": "tiny-b"}
