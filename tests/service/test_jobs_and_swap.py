"""Training jobs through the API and an in-process RQ worker; hot swap under load; store following; bootstrap."""

from __future__ import annotations

import asyncio
import functools
import shutil

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from service.settings import get_settings
from service.store import ModelStore
from tests.service.helpers import client_for
from tests.service.images import png_of

pytestmark = pytest.mark.anyio


def work_burst(redis_conn, settings) -> None:
    """Run every queued job in this process (a real RQ worker, without forking)."""
    from rq import Queue

    queue = Queue(settings.queue_name, connection=redis_conn, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)


@pytest.fixture
def worker_env(settings, monkeypatch):
    """The job reads the worker's own settings (environment), as `atnl worker` does."""
    monkeypatch.setenv("ATNL_MODEL_STORE", str(settings.model_store))
    monkeypatch.setenv("ATNL_DEVICE", "cpu")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_failing_job_reports_why(redis_conn, settings, worker_env, tmp_path) -> None:
    roots = settings.model_copy(update={"data_roots": [tmp_path / "data"]})
    async for client in client_for(roots):
        await failing_job_reports_why(client, redis_conn, settings, tmp_path / "data")


async def failing_job_reports_why(client, redis_conn, settings, root) -> None:
    r = await client.post("/v1/train", json={"dataset": "folder:missing-digits", "epochs": 1})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"
    job = (await client.get(accepted["status_url"])).json()
    assert job == {"id": accepted["job_id"], "status": "queued", "progress": None, "model_id": None, "error": None}
    work_burst(redis_conn, settings)
    job = (await client.get(accepted["status_url"])).json()
    assert job["status"] == "failed"
    assert "DatasetError" in job["error"] and "<path>" in job["error"] and str(root) not in job["error"], job["error"]
    assert (await client.delete(accepted["status_url"])).status_code == 409
    assert [m["id"] for m in (await client.get("/v1/models")).json()["models"]] == ["tiny"]


async def test_cancel_a_queued_job(client, redis_conn, settings, worker_env) -> None:
    job_id = (await client.post("/v1/train", json={"epochs": 1})).json()["job_id"]
    r = await client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json() == {"id": job_id, "status": "canceled"}
    work_burst(redis_conn, settings)  # nothing left to run
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "canceled"
    assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 409


async def test_hot_swap_under_concurrent_requests_loses_none(client, settings, digits) -> None:
    shutil.copytree(settings.model_store / "tiny", settings.model_store / "tiny-b")
    image = png_of(digits[6][0])
    pair = {"start": ("a.png", image, "image/png"), "end": ("b.png", png_of(digits[8][0]), "image/png")}

    async def encode():
        return await client.post("/v1/encode", files=[("files", ("a.png", image, "image/png"))])

    async def interpolate():
        return await client.post("/v1/interpolate", files=pair, data={"steps": "4"})

    async def swaps():
        out = []
        for target in ["tiny-b", "tiny", "tiny-b", "tiny", "tiny-b"]:
            out.append(await client.post(f"/v1/models/{target}/activate", json={}))
            await asyncio.sleep(0)
        return out

    requests = [encode() if k % 2 else interpolate() for k in range(40)]
    *answers, swap_answers = await asyncio.gather(*requests, swaps())
    assert [r.status_code for r in answers] == [200] * 40
    assert {r.json()["model_id"] for r in answers} <= {"tiny", "tiny-b"}
    assert [r.status_code for r in swap_answers] == [200] * 5
    assert swap_answers[-1].json() == {"active": "tiny-b", "previous": "tiny"}
    assert (await client.get("/v1/models")).json()["active"] == "tiny-b"
    assert ModelStore(settings.model_store).active_id() == "tiny-b"


async def test_api_follows_the_active_pointer(client, settings) -> None:
    shutil.copytree(settings.model_store / "tiny", settings.model_store / "from-worker")
    ModelStore(settings.model_store).set_active("from-worker")  # what a job with activate: true does
    for _ in range(50):
        if (await client.get("/readyz")).json()["model_id"] == "from-worker":
            break
        await asyncio.sleep(0.1)
    assert (await client.get("/readyz")).json()["model_id"] == "from-worker"


def test_bootstrap_trains_the_default_model_once(tmp_path, monkeypatch, store_dir) -> None:
    import models.training
    from service.bootstrap import bootstrap_default_model

    assert bootstrap_default_model(ModelStore(store_dir), "cpu") is None  # a model is there: nothing to train

    # The real default is TrainConfig() (tens of epochs); one epoch keeps the test fast.
    monkeypatch.setattr(models.training, "TrainConfig", functools.partial(models.training.TrainConfig, epochs=1, latent_dim=8))
    store = ModelStore(tmp_path / "fresh")
    model_id = bootstrap_default_model(store, "cpu")
    assert model_id is not None and store.active_id() == model_id
    assert store.describe(model_id)["family"] == "atnl" and store.describe(model_id)["dataset"] == "mnist-5k"
