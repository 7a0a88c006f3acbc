"""Training jobs (service/training; docs/API.md §5) through the API and an in-process RQ worker."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from service.settings import get_settings
from tests.service.helpers import client_for

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
