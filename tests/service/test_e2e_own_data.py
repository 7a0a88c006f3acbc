"""Your own data end to end (docs/API.md §7, "Your own data"), through a real `atnl serve` and
`atnl worker`: a colour archive of four numerically named labels at a side of 24 is uploaded,
trained on (upload:ID), activated and used at its own side and in colour: interpolate (json,
png, gif), hallucinate with label names (json, zip), the samples. Deleting the data set leaves
the model working and its record of the data set in place."""

from __future__ import annotations

import base64
import csv
import io
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from benchmarks.servers import wait_until
from tests.service.archives import bar_members, bar_picture, encoded, zip_of
from tests.service.e2e_stack import TIMEOUT, Stack, running_stack

pytestmark = pytest.mark.e2e
LABELS = ["5", "10", "20", "40"]
"""Numbers whose text order (10, 20, 40, 5) is not their order."""
SIDE = 24
"""Not MNIST's 28: the model follows the data set's side."""
PER_LABEL = 25
TRAIN = {"epochs": 2, "batch_size": 20, "latent_dim": 8, "realism_weight": 0.0, "threads": 1, "activate": True}
"""Seconds on 2 CPU cores (one torch thread: on a busy machine two took three times as long):
what is tested is the path, not the quality."""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("e2e-own-data")) as running:
        yield running


@pytest.fixture(scope="module")
def uploaded(stack: Stack) -> dict:
    """The data set's record, as POST /v1/datasets answered it."""
    archive = zip_of(list(reversed(bar_members(LABELS, PER_LABEL, SIDE))))  # no order to lean on
    r = stack.http.post("/v1/datasets", files={"archive": ("bars.zip", archive, "application/zip")})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def model_id(stack: Stack, uploaded: dict) -> str:
    """The model trained on the upload, finished and served."""
    r = stack.http.post("/v1/train", json={"dataset": f"upload:{uploaded['id']}", **TRAIN})
    assert r.status_code == 202, r.text
    job = stack.job_reaches(r.json()["job_id"], {"finished", "failed"})
    assert job["status"] == "finished", job
    served = lambda: stack.http.get("/readyz").json().get("model_id") == job["model_id"]  # noqa: E731
    wait_until(served, "the API to serve the new model", TIMEOUT)
    return str(job["model_id"])


def picture(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def colour_png(data: bytes, size: tuple[int, int] = (SIDE, SIDE)) -> Image.Image:
    """``data`` decoded: a PNG in colour of ``size`` (width, height)."""
    img = picture(data)
    assert (img.format, img.mode, img.size) == ("PNG", "RGB", size)
    return img


def examples(labels: list[str], seed: int = 7) -> dict[str, tuple[str, bytes, str]]:
    """New bar pictures of ``labels`` (names), as the form parts of an upload."""
    rng = np.random.default_rng(seed)
    return {
        f"{k}": (f"{k}.png", encoded(bar_picture(LABELS.index(label), rng, SIDE)), "image/png") for k, label in enumerate(labels)
    }


def interpolate(stack: Stack, fmt: str, steps: int = 6):
    pictures = examples(["5", "40"])
    files = {"start": pictures["0"], "end": pictures["1"]}
    r = stack.http.post("/v1/interpolate", files=files, data={"steps": str(steps), "format": fmt})
    assert r.status_code == 200, r.text
    return r


def test_the_upload_keeps_numeric_label_order_colour_and_side(uploaded: dict) -> None:
    assert uploaded["labels"] == LABELS
    assert uploaded["counts"] == dict.fromkeys(LABELS, PER_LABEL) and uploaded["images"] == 4 * PER_LABEL
    assert uploaded["image_shape"] == [3, SIDE, SIDE]


def test_the_trained_model_is_active_and_records_the_upload(stack: Stack, uploaded: dict, model_id: str) -> None:
    listing = stack.http.get("/v1/models").json()
    assert listing["active"] == model_id
    (info,) = [m for m in listing["models"] if m["id"] == model_id]
    assert info["dataset"] == f"upload:{uploaded['id']}" and info["labels"] == LABELS
    assert info["image_shape"] == [3, SIDE, SIDE] and info["preprocess"] == "fit"


def test_interpolate_gives_colour_frames_at_the_data_sets_side(stack: Stack, model_id: str) -> None:
    body = interpolate(stack, "json").json()
    assert body["model_id"] == model_id and len(body["frames"]) == 6
    for frame in body["frames"]:
        colour_png(base64.b64decode(frame))
    strip = interpolate(stack, "png")
    assert strip.headers["content-type"] == "image/png" and strip.headers["x-model-id"] == model_id
    colour_png(strip.content, (6 * SIDE, SIDE))
    gif = picture(interpolate(stack, "gif").content)
    assert gif.format == "GIF" and gif.size == (SIDE, SIDE) and gif.n_frames == 6


def test_hallucinate_by_label_name_gives_colour_images_of_those_labels(stack: Stack, model_id: str) -> None:
    given = ["5", "10", "10", "20", "40", "40"]
    files = [("files", part) for part in examples(given).values()]
    form = {"labels": ",".join(given), "per_class": "2", "filter": "none", "seed": "3"}
    body = stack.http.post("/v1/hallucinate", files=files, data=form).json()
    assert body["model_id"] == model_id, body
    assert sorted(image["label"] for image in body["images"]) == sorted(LABELS * 2)  # filter=none: all of them
    for image in body["images"]:
        colour_png(base64.b64decode(image["png"]))
        assert image["read"] in LABELS
    assert {d["given"] for d in body["disagreements"]} <= set(given)

    r = stack.http.post("/v1/hallucinate", files=files, data={**form, "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("labels.csv").decode())))
        assert sorted(row["label"] for row in rows) == sorted(LABELS * 2)
        for row in rows:
            colour_png(z.read(row["file"]))


def test_samples_are_the_data_sets_colour_images(stack: Stack, model_id: str) -> None:
    r = stack.http.get("/v1/samples", params={"per_label": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == model_id and body["labels"] == LABELS
    assert [s["label"] for s in body["samples"]] == [label for label in LABELS for _ in range(2)]
    for sample in body["samples"]:
        colour_png(base64.b64decode(sample["png"]))


def test_deleting_the_data_set_leaves_the_model_and_its_record(stack: Stack, uploaded: dict, model_id: str) -> None:
    http = stack.http
    assert http.delete(f"/v1/datasets/{uploaded['id']}").status_code == 204
    assert http.get(f"/v1/datasets/{uploaded['id']}").status_code == 404
    assert http.get("/v1/datasets").json() == {"datasets": []}
    frames = interpolate(stack, "json").json()["frames"]
    colour_png(base64.b64decode(frames[0]))
    (info,) = [m for m in http.get("/v1/models").json()["models"] if m["id"] == model_id]
    assert info["dataset"] == f"upload:{uploaded['id']}" and info["labels"] == LABELS
    assert info["image_shape"] == [3, SIDE, SIDE]
    again = http.post("/v1/train", json={"dataset": f"upload:{uploaded['id']}", **TRAIN})
    assert again.status_code == 422 and "uploaded data set" in again.json()["detail"], again.text
