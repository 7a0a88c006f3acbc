"""Who may train and with what (docs/API.md §5, §7): bounded training configs, data sets limited
to the built-ins and ATNL_DATA_ROOTS, a capped queue, activate with a JSON body, and the
no-token mode that answers loopback clients only. Nothing refused is ever enqueued."""

from __future__ import annotations

import logging
import shutil

import pytest
from httpx import ASGITransport, AsyncClient

from service.main import create_app
from tests.service.helpers import assert_problem, client_for

pytestmark = pytest.mark.anyio


OUT_OF_RANGE = [
    ({"batch_size": 10_000_000}, "batch_size", "ATNL_MAX_TRAIN_BATCH_SIZE"),
    ({"latent_dim": 1_000_000}, "latent_dim", "ATNL_MAX_TRAIN_LATENT_DIM"),
    ({"threads": 100_000}, "threads", "ATNL_MAX_TRAIN_THREADS"),
    ({"threads": -1}, "threads", ""),
    ({"epochs": 2.5}, "epochs", ""),
    ({"epochs": "3"}, "epochs", ""),
    ({"epochs": True}, "epochs", ""),
    ({"lr": -1}, "lr", ""),
    ({"lr": 50}, "lr", ""),
    ({"test_fraction": 0.99}, "test_fraction", ""),
    ({"test_fraction": 0}, "test_fraction", ""),
    ({"device": "tpu"}, "device", ""),
    ({"margin_schedule": "cubic"}, "margin_schedule", ""),
    ({"lr_schedule": "step"}, "lr_schedule", ""),
    ({"seed": -1}, "seed", ""),
    ({"seed": 2**64}, "seed", ""),
    ({"margin": 10}, "margin", ""),
    ({"triplet_weight": 1e9}, "triplet_weight", ""),
    ({"circle_span": 4}, "circle_span", ""),
    ({"dataset": "x" * 5000}, "dataset", ""),
    ({"dataset": "imagenet"}, "dataset", ""),
    ({"dataset": "folder:/etc"}, "dataset", "ATNL_DATA_ROOTS"),
    ({"dataset": "mnist-idx:/root"}, "dataset", "ATNL_DATA_ROOTS"),
    ({"dataset": "folder:"}, "dataset", ""),
]


@pytest.mark.parametrize(("body", "field", "words"), OUT_OF_RANGE, ids=[f"{k}" for k in range(len(OUT_OF_RANGE))])
async def test_out_of_range_configs_are_refused_before_enqueueing(client, redis_conn, body, field, words) -> None:
    problem = assert_problem(await client.post("/v1/train", json=body), 422, field, words)
    assert "/etc" not in problem["detail"] and "/root" not in problem["detail"]
    assert redis_conn.keys("rq:job:*") == []


async def test_nan_in_a_training_config_is_refused(client, redis_conn) -> None:
    r = await client.post("/v1/train", content=b'{"lr": NaN}', headers={"content-type": "application/json"})
    assert_problem(r, 422, "lr")
    assert redis_conn.keys("rq:job:*") == []


async def test_directory_data_sets_only_inside_the_data_roots(settings, redis_conn, tmp_path) -> None:
    root = tmp_path / "data"
    (root / "digits").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    async for client in client_for(settings.model_copy(update={"data_roots": [root]})):
        for spec in ("folder:../private", f"folder:{outside}", "folder:escape", "mnist-idx:escape/x", "folder:/"):
            body = assert_problem(await client.post("/v1/train", json={"dataset": spec}), 422, "ATNL_DATA_ROOTS")
            assert str(tmp_path) not in body["detail"]
        assert redis_conn.keys("rq:job:*") == []
        for spec in ("folder:digits", f"folder:{root / 'digits'}", "mnist-5k", "pose-digits"):
            r = await client.post("/v1/train", json={"dataset": spec, "epochs": 1})
            assert r.status_code == 202, r.text
        assert len(redis_conn.keys("rq:job:*")) == 4


async def test_a_full_queue_answers_503_with_retry_after(settings, redis_conn) -> None:
    async for client in client_for(settings.model_copy(update={"max_queued_jobs": 2, "queue_retry_after_seconds": 7})):
        for _ in range(2):
            assert (await client.post("/v1/train", json={"epochs": 1})).status_code == 202
        r = await client.post("/v1/train", json={"epochs": 1})
        assert_problem(r, 503, "ATNL_MAX_QUEUED_JOBS")
        assert r.headers["retry-after"] == "7"
        assert len(redis_conn.keys("rq:job:*")) == 2


async def test_activate_needs_a_json_body(client, settings) -> None:
    shutil.copytree(settings.model_store / "tiny", settings.model_store / "other")
    assert_problem(await client.post("/v1/models/other/activate"), 415, "application/json")
    form = await client.post("/v1/models/other/activate", data={"x": "1"})  # what a cross-site form sends
    assert_problem(form, 415, "application/json")
    assert_problem(await client.post("/v1/models/other/activate", json={"force": True}), 422, "force")
    assert (await client.get("/v1/models")).json()["active"] == "tiny"
    r = await client.post("/v1/models/other/activate", json={})
    assert r.status_code == 200 and r.json() == {"active": "other", "previous": "tiny"}


async def test_without_a_token_only_loopback_clients_may_change_things(settings, redis_conn) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        remote = AsyncClient(transport=ASGITransport(app=app, client=("203.0.113.9", 5000)), base_url="http://atnl.test")
        local = AsyncClient(transport=ASGITransport(app=app, client=("::1", 5000)), base_url="http://atnl.test")
        async with remote, local:
            assert_problem(await remote.post("/v1/train", json={"epochs": 1}), 403, "ATNL_API_TOKEN")
            assert_problem(await remote.post("/v1/models/tiny/activate", json={}), 403, "loopback")
            assert_problem(await remote.delete("/v1/jobs/whatever"), 403)
            assert redis_conn.keys("rq:job:*") == []
            assert (await remote.get("/v1/models")).status_code == 200  # reads stay open
            assert (await local.post("/v1/train", json={"epochs": 1})).status_code == 202


async def test_startup_warns_when_open_mutations_bind_beyond_loopback(settings, redis_conn, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="atnl.service"):
        async for _ in client_for(settings.model_copy(update={"host": "0.0.0.0"})):
            pass
    assert any("ATNL_API_TOKEN is not set" in r.getMessage() for r in caplog.records)


async def test_a_worker_on_another_store_fails_the_job_at_once(client, settings, redis_conn, tmp_path, monkeypatch) -> None:
    """API and worker on different stores (a relative ATNL_MODEL_STORE from two working
    directories): the job fails before training, saying why, instead of "finishing" with a
    model the API cannot find."""
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from service.settings import Settings, get_settings

    job_id = (await client.post("/v1/train", json={"epochs": 1, "latent_dim": 8})).json()["job_id"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATNL_MODEL_STORE", "var/models")  # the relative default, from another directory
    monkeypatch.setenv("ATNL_DEVICE", "cpu")
    get_settings.cache_clear()
    try:
        assert Settings(_env_file=None).model_store == tmp_path / "var" / "models"  # type: ignore[call-arg]
        queue = Queue(settings.queue_name, connection=redis_conn, serializer=JSONSerializer)
        SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)
    finally:
        get_settings.cache_clear()
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "failed" and job["progress"] is None, job
    assert "WrongModelStore" in job["error"] and "ATNL_MODEL_STORE" in job["error"] and str(tmp_path) not in job["error"]
    assert list((tmp_path / "var" / "models").iterdir()) == [tmp_path / "var" / "models" / "STORE_ID"]


def test_every_built_in_data_set_is_open_over_http() -> None:
    from models.data import BUILT_IN as SHIPPED
    from service.datasets import BUILT_IN, allowed_dataset

    assert set(BUILT_IN) == set(SHIPPED)
    assert all(allowed_dataset(spec, []) == spec for spec in SHIPPED)
