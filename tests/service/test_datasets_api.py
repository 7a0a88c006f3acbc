"""Uploaded data sets through the app (docs/API.md §7, "Your own data"): upload, list, get,
delete, the token guard, the archive cap counted while streaming, a client that leaves
mid-upload, and training on an upload (enqueued only: nothing is trained here)."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from httpx import ASGITransport, AsyncClient
from PIL import Image
from pydantic import SecretStr

from service.main import create_app
from service.settings import Settings
from service.store import ModelStore
from tests.service.archives import empty_store_settings, labelled, tar_gz_of, tiny_png, zip_of
from tests.service.helpers import assert_problem, client_for

pytestmark = pytest.mark.anyio
ORDINAL = ["5", "10", "20", "40"]
BOUNDARY = "dataset-boundary"


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    """An empty model store: no model is trained for these tests."""
    return empty_store_settings(tmp_path, redis_url)


def datasets_root(settings: Settings) -> Path:
    return settings.model_store / "datasets"


async def upload(client: AsyncClient, data: bytes, filename: str = "digits.zip", **kwargs) -> dict:
    r = await client.post("/v1/datasets", files={"archive": (filename, data, "application/octet-stream")}, **kwargs)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/datasets/{r.json()['id']}"
    return r.json()


def multipart(filename: str, data: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; filename="{filename}"\r\n\r\n'.encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def picture(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


async def chunked(pieces: list[bytes], pulled: list[int]) -> AsyncIterator[bytes]:
    for k, piece in enumerate(pieces):
        pulled.append(k)
        yield piece


async def test_a_zip_of_label_folders_is_stored_in_numeric_label_order(client, settings: Settings) -> None:
    members = labelled(ORDINAL, per_label=2, prefix="my digits/")  # a zipped folder
    record = await upload(client, zip_of(members), filename="../My Digits!.zip")
    assert record["labels"] == ORDINAL  # numbers sort as numbers, not as text ("10" < "20" < "40" < "5")
    assert record["counts"] == dict.fromkeys(ORDINAL, 2) and record["images"] == 8
    assert record["image_shape"] == [1, 12, 12] and record["size_range"] == {"min": [12, 12], "max": [12, 12]}
    assert record["name"] == "My Digits_.zip" and record["id"].startswith("ds-")
    stored = datasets_root(settings) / record["id"]
    assert json.loads((stored / "dataset.json").read_text()) == record
    assert (stored / "labels.txt").read_text().splitlines() == ORDINAL
    rows = list(csv.reader(io.StringIO((stored / "labels.csv").read_text())))
    assert rows[0] == ["file", "label"] and rows[1:3] == [["images/0/0.png", "5"], ["images/0/1.png", "5"]]
    by_name = dict(members)
    original = np.asarray(Image.open(io.BytesIO(by_name["my digits/40/1.png"])))
    with Image.open(stored / "images" / "3" / "1.png") as kept:  # label index 3 is "40"
        assert kept.format == "PNG" and kept.mode == "L" and np.array_equal(np.asarray(kept), original)
    assert record["bytes"] == sum(p.stat().st_size for p in stored.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert sorted(p.name for p in datasets_root(settings).iterdir()) == [record["id"]]  # no temporary folder left


async def test_a_tar_gz_with_labels_csv_and_labels_txt(client, settings: Settings) -> None:
    images = {
        "pics/a.png": tiny_png(1, "RGB", (12, 10)),
        "pics/b.png": tiny_png(2, "RGBA", (16, 14)),
        "pics/c.png": tiny_png(3, "L", (20, 9)),
        "d.png": tiny_png(4, "L"),
    }
    grey_rgb = io.BytesIO()
    Image.new("RGB", (12, 12), (90, 90, 90)).save(grey_rgb, format="PNG")
    images["e.png"] = grey_rgb.getvalue()
    rows = "file,label\npics/a.png,young\npics/b.png,old\npics/c.png,middle\nd.png,young\ne.png,old\n"
    members = [*images.items(), ("labels.csv", rows.encode()), ("labels.txt", b"young\nmiddle\nold\n"), ("README", b"x")]
    record = await upload(client, tar_gz_of(members), filename="faces.tgz")
    assert record["labels"] == ["young", "middle", "old"]  # labels.txt's order
    assert record["counts"] == {"young": 2, "middle": 1, "old": 2}
    assert record["image_shape"] == [3, 9, 12]  # colour; the smallest height and width
    assert record["size_range"] == {"min": [9, 12], "max": [14, 20]}
    stored = datasets_root(settings) / record["id"] / "images"
    modes = {p.relative_to(stored).as_posix(): picture(p).mode for p in stored.rglob("*.png")}
    # within a label, by path: d.png (grey), pics/a.png (RGB); e.png (equal channels: grey), pics/b.png (RGBA)
    assert modes == {"0/0.png": "L", "0/1.png": "RGB", "1/0.png": "L", "2/0.png": "L", "2/1.png": "RGB"}
    flattened = np.asarray(picture(stored / "2" / "1.png"), dtype=np.float32)  # b.png: RGBA at alpha 128 on white
    source = np.asarray(Image.open(io.BytesIO(images["pics/b.png"])), dtype=np.float32)
    assert np.abs(flattened - (source[..., :3] * 128 + 255 * 127) / 255).max() <= 1.5


async def test_list_get_and_delete(client, settings: Settings) -> None:
    assert (await client.get("/v1/datasets")).json() == {"datasets": []}
    first = await upload(client, zip_of(labelled(ORDINAL)))
    second = await upload(client, tar_gz_of(labelled(["1", "2", "3"])), filename="b.tar.gz")
    listing = (await client.get("/v1/datasets")).json()["datasets"]
    assert [d["id"] for d in listing] == [first["id"], second["id"]]  # oldest first
    assert (await client.get(f"/v1/datasets/{second['id']}")).json() == second
    r = await client.delete(f"/v1/datasets/{first['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_problem(await client.get(f"/v1/datasets/{first['id']}"), 404, first["id"])
    assert_problem(await client.delete(f"/v1/datasets/{first['id']}"), 404)
    assert_problem(await client.get("/v1/datasets/..%2F..%2Fetc"), 404)
    assert_problem(await client.get("/v1/datasets/.upload-x"), 422, "invalid data set id")
    assert_problem(await client.delete("/v1/datasets/datasets"), 422, "invalid data set id")
    assert [d["id"] for d in (await client.get("/v1/datasets")).json()["datasets"]] == [second["id"]]
    assert sorted(os.listdir(datasets_root(settings))) == [second["id"]]


async def test_the_datasets_folder_is_not_a_model(client, settings: Settings) -> None:
    await upload(client, zip_of(labelled(ORDINAL)))
    assert ModelStore(settings.model_store).ids() == []
    assert (await client.get("/v1/models")).json()["models"] == []
    assert_problem(await client.post("/v1/models/datasets/activate", json={}), 404)


async def test_the_upload_form_takes_one_archive_only(client, settings: Settings) -> None:
    data = zip_of(labelled(ORDINAL))
    assert_problem(await client.post("/v1/datasets", files={"files": ("a.zip", data)}), 422, "archive")
    assert_problem(await client.post("/v1/datasets", files=[("archive", ("a.zip", data)), ("archive", ("b.zip", data))]), 422)
    assert_problem(await client.post("/v1/datasets", data={"archive": "not a file"}), 422, "file")
    assert_problem(await client.post("/v1/datasets", json={"archive": "x"}), 422, "archive")
    assert os.listdir(datasets_root(settings)) == []


async def test_upload_and_delete_are_token_guarded_reads_are_not(settings: Settings, redis_conn) -> None:
    data = zip_of(labelled(ORDINAL))
    async for client in client_for(settings.model_copy(update={"api_token": SecretStr("s3cret")})):
        assert_problem(await client.post("/v1/datasets", files={"archive": ("a.zip", data)}), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_problem(await client.post("/v1/datasets", files={"archive": ("a.zip", data)}, headers=wrong), 401)
        assert os.listdir(datasets_root(settings)) == []
        record = await upload(client, data, headers={"Authorization": "Bearer s3cret"})
        assert (await client.get("/v1/datasets")).status_code == 200
        assert (await client.get(f"/v1/datasets/{record['id']}")).status_code == 200
        assert_problem(await client.delete(f"/v1/datasets/{record['id']}"), 401)
        r = await client.delete(f"/v1/datasets/{record['id']}", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 204
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        remote = ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with AsyncClient(transport=remote, base_url="http://atnl.test") as client:
            assert_problem(await client.post("/v1/datasets", files={"archive": ("a.zip", data)}), 403, "ATNL_API_TOKEN")
            assert_problem(await client.delete("/v1/datasets/ds-20200101T000000Z-abcdef"), 403)
            assert (await client.get("/v1/datasets")).status_code == 200


async def test_an_archive_over_its_cap_is_refused_while_streaming(settings: Settings, redis_conn) -> None:
    """The archive part has its own cap, not ATNL_MAX_UPLOAD_BYTES (an image's), and image requests keep theirs."""
    small = settings.model_copy(update={"max_archive_bytes": 100_000, "max_upload_bytes": 20_000, "max_request_bytes": 30_000})
    async for client in client_for(small):
        members = [(f"{label}/{k}.png", tiny_png(k, "RGB", (60, 60))) for label in ("1", "2", "3") for k in range(2)]
        fits = zip_of(members)  # ~65 kB: over the image and request caps, within the archive's
        assert 30_000 < len(fits) < 100_000
        await upload(client, fits)
        body = multipart("big.zip", os.urandom(300_000))
        pieces, pulled = [body[k : k + 8192] for k in range(0, len(body), 8192)], []
        headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        r = await client.post("/v1/datasets", content=chunked(pieces, pulled), headers=headers)
        assert_problem(r, 413, "ATNL_MAX_ARCHIVE_BYTES")
        assert len(pulled) < len(pieces) // 2  # refused as it crossed the cap, not after spooling it
        r = await client.post("/v1/datasets", content=body, headers=headers)  # a declared length: refused unread
        assert_problem(r, 413, "ATNL_MAX_ARCHIVE_BYTES")
        r = await client.post("/v1/encode", files={"files": ("a.png", fits, "image/png")})
        assert_problem(r, 413, "ATNL_MAX_")  # an image part keeps ATNL_MAX_UPLOAD_BYTES (and its body the request cap)
        assert len(os.listdir(datasets_root(settings))) == 1


async def post_and_leave(app, body: bytes, sent_before_leaving: int, leave_once: threading.Event | None = None) -> int:
    """POST ``body`` to /v1/datasets straight through ASGI, the client leaving after the first
    ``sent_before_leaving`` bytes (and, if given, once ``leave_once`` is set); the answer's status."""
    messages = [{"type": "http.request", "body": body[:sent_before_leaving], "more_body": sent_before_leaving < len(body)}]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        while leave_once is not None and not leave_once.is_set():
            await anyio.sleep(0.005)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/datasets", "raw_path": b"/v1/datasets", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"atnl.test"), (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
        "client": ("127.0.0.1", 5000), "server": ("atnl.test", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return int(sent[0]["status"])


async def test_a_client_that_leaves_mid_upload_leaves_nothing_behind(client, settings: Settings) -> None:
    body = multipart("a.zip", zip_of(labelled(ORDINAL, per_label=20)))
    assert await post_and_leave(client.app, body, len(body) // 2) == 499  # type: ignore[attr-defined]
    assert os.listdir(datasets_root(settings)) == []
    store, unpacking, created = client.app.state.datasets, threading.Event(), []  # type: ignore[attr-defined]
    create = store.create

    def create_watched(*args):
        unpacking.set()  # the client leaves now, while this thread works
        time.sleep(0.2)  # long enough for the server to notice
        created.append(create(*args))
        return created[-1]

    store.create = create_watched
    assert await post_and_leave(client.app, body, len(body), leave_once=unpacking) == 499  # type: ignore[attr-defined]
    assert len(created) == 1 and os.listdir(datasets_root(settings)) == []  # stored, then removed: no one learnt its id


async def test_training_on_an_upload_is_enqueued_and_a_missing_one_refused(client, settings: Settings, redis_conn) -> None:
    record = await upload(client, zip_of(labelled(ORDINAL)))
    spec = f"upload:{record['id']}"
    r = await client.post("/v1/train", json={"dataset": spec, "epochs": 1})
    assert r.status_code == 202, r.text
    job = (await client.get(r.json()["status_url"])).json()
    assert job["status"] == "queued"
    assert spec.encode() in b"".join(v for k in redis_conn.keys("rq:job:*") for v in redis_conn.hgetall(k).values())
    for missing in ("upload:ds-20200101T000000Z-abcdef", "upload:missing", "upload:../../etc", "upload:"):
        assert_problem(await client.post("/v1/train", json={"dataset": missing, "epochs": 1}), 422, "uploaded data set")
    train = (await client.get("/openapi.json")).json()["paths"]["/v1/train"]["post"]["requestBody"]["content"]
    spec_schema = train["application/json"]["schema"]["properties"]["dataset"]
    assert {"type": "string", "enum": [spec]} in spec_schema["anyOf"]  # the document names the uploads there are
    assert (await client.delete(f"/v1/datasets/{record['id']}")).status_code == 204
    assert_problem(await client.post("/v1/train", json={"dataset": spec, "epochs": 1}), 422, "uploaded data set")


async def test_an_upload_is_open_to_training_beside_data_roots(client_factory, settings: Settings, redis_conn, tmp_path) -> None:
    async for client in client_factory(settings.model_copy(update={"data_roots": [tmp_path]})):
        record = await upload(client, zip_of(labelled(ORDINAL)))
        r = await client.post("/v1/train", json={"dataset": f"upload:{record['id']}", "epochs": 1})
        assert r.status_code == 202, r.text
