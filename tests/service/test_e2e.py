"""End to end: redis, `atnl worker` and `atnl serve` as real processes, started with the
commands written in docker-compose.yml; a model trained through POST /v1/train, followed,
activated and used; a running job stopped, a queued one canceled, a failing one explained."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.servers import wait_until
from tests.service.e2e_stack import TIMEOUT, Stack, running_stack
from tests.service.images import photo_jpeg_of, png_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("e2e")) as running:
        yield running


def test_train_follow_activate_interpolate(stack: Stack, digits) -> None:
    http = stack.http
    assert http.get("/readyz").status_code == 503  # empty store, no default training here
    r = http.post("/v1/train", json={"epochs": 1, "latent_dim": 8})
    assert r.status_code == 202, r.text
    seen: list[dict] = []
    job = stack.job_reaches(r.json()["job_id"], {"finished", "failed"}, seen)
    assert job["status"] == "finished", job
    assert any(p.get("epoch") == 1 and isinstance(p.get("loss"), float) for p in seen), seen
    model_id = job["model_id"]
    assert model_id and model_id in [m["id"] for m in http.get("/v1/models").json()["models"]]

    r = http.post(f"/v1/models/{model_id}/activate", json={})
    assert r.status_code == 200 and r.json()["active"] == model_id
    assert http.get("/readyz").json() == {"status": "ok", "model_id": model_id}

    files = {
        "start": ("zero.jpg", photo_jpeg_of(digits[0][0]), "image/jpeg"),
        "end": ("five.png", png_of(digits[5][0]), "image/png"),
    }
    r = http.post("/v1/interpolate", files=files, data={"steps": "8"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == model_id and len(body["frames"]) == 8 and body["omegas"][-1] == 1.0
    assert 'atnl_model_info{model_id="' + model_id + '"} 1.0' in http.get("/metrics").text


def test_stop_running_cancel_queued_explain_failed(stack: Stack) -> None:
    http = stack.http
    running = http.post("/v1/train", json={"epochs": 100, "latent_dim": 8}).json()["job_id"]
    queued = http.post("/v1/train", json={"epochs": 1, "latent_dim": 8}).json()["job_id"]  # one worker: it waits
    started = lambda: stack.job(running)["status"] == "started" and stack.job(running)["progress"]  # noqa: E731
    wait_until(started, "the long job to start", TIMEOUT)

    assert http.delete(f"/v1/jobs/{queued}").json() == {"id": queued, "status": "canceled"}
    assert http.delete(f"/v1/jobs/{running}").json() == {"id": running, "status": "stopped"}
    assert stack.job_reaches(running, {"stopped", "failed", "finished"})["status"] == "stopped"
    assert stack.job(queued)["status"] == "canceled"

    # The worker survives the stop and reports why a bad job fails.
    failing = http.post("/v1/train", json={"dataset": "folder:no-such-faces", "epochs": 1}).json()["job_id"]
    job = stack.job_reaches(failing, {"failed", "finished"})
    assert job["status"] == "failed" and "DatasetError" in job["error"], job
    assert str(stack.logs) not in job["error"] and "<path>" in job["error"], job  # no server path leaks
