"""Inference through the ASGI app: encode, decode, interpolate, hallucinate, health, metrics."""

from __future__ import annotations

import base64
import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.service.images import photo_jpeg_of, png_of

pytestmark = pytest.mark.anyio


def image_of(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), dtype=np.float32) / 255


async def test_health_ready_and_model_list(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "model_id": "tiny"}
    assert (await client.get("/readyz")).status_code == 200
    listing = (await client.get("/v1/models")).json()
    assert listing["active"] == "tiny"
    (model,) = listing["models"]
    assert model["id"] == "tiny" and model["family"] == "atnl" and model["dataset"] == "mnist-5k"
    assert "linear_probe_acc" in model["metrics"]


async def test_readyz_is_503_without_a_model(settings, tmp_path) -> None:
    from tests.service.helpers import client_for

    empty = settings.model_copy(update={"model_store": tmp_path / "empty"})
    async for client in client_for(empty):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        r = await client.post("/v1/encode", files=[("files", ("a.png", png_of(np.zeros((28, 28))), "image/png"))])
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"


async def test_encode_png_and_large_rgb_jpeg_photo(client, digits) -> None:
    pngs = [png_of(digits[k][0]) for k in range(10)]
    r = await client.post("/v1/encode", files=[("files", (f"{k}.png", b, "image/png")) for k, b in enumerate(pngs)])
    assert r.status_code == 200, r.text
    body = r.json()
    z = np.asarray(body["latents"])
    assert body["model_id"] == "tiny" and z.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)

    photos = [photo_jpeg_of(digits[k][0], seed=k) for k in range(10)]
    assert Image.open(io.BytesIO(photos[0])).size == (1600, 1200)
    r = await client.post("/v1/encode", files=[("files", (f"{k}.jpg", b, "image/jpeg")) for k, b in enumerate(photos)])
    assert r.status_code == 200, r.text
    z_photo = np.asarray(r.json()["latents"])
    # The preprocessed photo lands next to its own digit's latent.
    cos = (z_photo * z).sum(axis=1)
    print("photo/png latent cosines", np.round(cos, 3))
    assert np.median(cos) > 0.9


async def test_preprocess_none_keeps_mnist_pixels(client, digits) -> None:
    from service.imaging import ImageCaps, load_image

    x = digits[3][0]
    plain = load_image(png_of(x), 28, preprocess="none", caps=ImageCaps(10**6, 2**30))[0]
    np.testing.assert_allclose(plain, x, atol=1 / 255 + 1e-6)
    r = await client.post("/v1/encode?preprocess=none", files=[("files", ("a.png", png_of(x), "image/png"))])
    assert r.status_code == 200


async def test_decode_round_trip(client, digits) -> None:
    r = await client.post("/v1/encode", files=[("files", ("a.png", png_of(digits[7][0]), "image/png"))])
    latents = r.json()["latents"]
    r = await client.post("/v1/decode", json={"latents": latents})
    assert r.status_code == 200, r.text
    (png,) = r.json()["images"]
    assert image_of(png).shape == (28, 28)


async def test_interpolate_json_png_and_gif(client, digits) -> None:
    files = {"start": ("a.png", png_of(digits[0][0]), "image/png"), "end": ("b.png", png_of(digits[5][0]), "image/png")}
    r = await client.post("/v1/interpolate", files=files, data={"steps": "6"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "slerp" and len(body["frames"]) == 6
    np.testing.assert_allclose(body["omegas"], np.linspace(0, 1, 6), atol=1e-6)
    assert all(image_of(f).shape == (28, 28) for f in body["frames"])

    assert len((await client.post("/v1/interpolate", files=files)).json()["frames"]) == 8  # the default

    r = await client.post("/v1/interpolate", files=files, data={"steps": "5", "format": "png", "method": "lerp"})
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (5 * 28, 28)

    r = await client.post("/v1/interpolate?format=gif&steps=4", files=files)
    assert r.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(r.content))
    assert gif.n_frames == 4


async def test_hallucinate_per_class_reproducible_and_zip(client, digits) -> None:
    files = [("files", (f"{k}_{j}.png", png_of(x), "image/png")) for k in range(10) for j, x in enumerate(digits[k])]
    labels = ",".join(str(k) for k in range(10) for _ in digits[k])
    form = {"labels": labels, "per_class": "3", "seed": "7", "filter": "none"}  # the tiny model's images are blobs: keep them
    first = await client.post("/v1/hallucinate", files=files, data=form)
    assert first.status_code == 200, first.text
    images = first.json()["images"]
    assert len(images) == 30
    assert sorted(im["label"] for im in images) == sorted(str(k) for k in range(10) for _ in range(3))
    for im in images:
        i, j = im["sources"]
        assert 0 <= i < 50 and 0 <= j < 50 and 0 <= im["omega"] <= 1
    again = await client.post("/v1/hallucinate", files=files, data=form)
    assert again.json() == first.json()
    other = await client.post("/v1/hallucinate", files=files, data={**form, "seed": "8"})
    assert other.json() != first.json()

    as_json_array = {"labels": '["' + labels.replace(",", '","') + '"]', "n": "12", "format": "zip", "filter": "none"}
    r = await client.post("/v1/hallucinate", files=files, data=as_json_array)
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("labels.csv").decode())))
        assert len(rows) == 12
        assert all(Image.open(io.BytesIO(zf.read(row["file"]))).size == (28, 28) for row in rows)
        assert all(row["read"] in [str(k) for k in range(10)] for row in rows)


async def test_hallucinate_lists_examples_the_model_reads_otherwise_and_checks_what_it_makes(client, digits) -> None:
    """A 3 sent as a 7: the answer names it (JSON and zip), draws it as a 7, and says what the self-check did."""
    files = [("files", (f"{k}.png", png_of(digits[k][j]), "image/png")) for k in (3, 7, 9) for j in range(2)]
    form = {"labels": "7,3,7,7,9,9", "per_class": "3", "strategy": "same", "seed": "0"}  # digits[3][0] labelled 7
    read = (await client.post("/v1/hallucinate", files=files, data=form)).json()
    assert {"file": 0, "given": "7", "read": "3"} == {k: v for k, v in read["disagreements"][0].items() if k != "confidence"}
    assert 0 < read["disagreements"][0]["confidence"] <= 1
    assert read["strategy"] == "same" and "order circle" in read["labels_note"]
    check = read["self_check"]
    assert check["checked"] and check["filter"] == "model" and check["flagged"] == 0
    assert len(read["images"]) + check["dropped"] == 9
    assert all(im["read"] == im["label"] for im in read["images"])  # the self-check keeps only what it reads as labelled

    kept = (await client.post("/v1/hallucinate", files=files, data={**form, "filter": "none"})).json()
    assert len(kept["images"]) == 9 and kept["self_check"]["replaced"] == kept["self_check"]["dropped"] == 0
    assert kept["self_check"]["flagged"] == sum(im["read"] != im["label"] for im in kept["images"])
    assert kept["disagreements"] == read["disagreements"]

    r = await client.post("/v1/hallucinate", files=files, data={**form, "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        given = list(csv.DictReader(io.StringIO(zf.read("disagreements.csv").decode())))
    in_zip = [(int(row["file"]), row["given"], row["read"]) for row in given]
    assert in_zip == [(d["file"], d["given"], d["read"]) for d in read["disagreements"]] and in_zip[0] == (0, "7", "3")


async def test_hallucinate_restyle_lends_styles_across_labels(client, digits) -> None:
    files = [("files", (f"{k}.png", png_of(digits[k][0]), "image/png")) for k in (3, 7, 9)]
    form = {"labels": "3,7,9", "per_class": "4", "strategy": "restyle", "filter": "none"}
    r = await client.post("/v1/hallucinate", files=files, data=form)
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    # 3, 7 and 9 restyled (the label's own example first, a donor of another label second); 8 filled from 7 -> 9.
    assert sorted(im["label"] for im in images) == sorted(["3", "7", "8", "9"] * 4)
    source_label = {0: "3", 1: "7", 2: "9"}
    for im in images:
        i, j = im["sources"]
        if im["label"] == "8":
            assert (i, j) == (1, 2)
        else:
            assert source_label[i] == im["label"] and j != i and 0.5 <= im["omega"] <= 1


async def test_metrics_count_requests_and_name_the_model(client, digits) -> None:
    await client.post("/v1/encode", files=[("files", ("a.png", png_of(digits[1][0]), "image/png"))])
    text = (await client.get("/metrics")).text
    assert 'atnl_requests_total{method="POST",route="/v1/encode",status="200"}' in text
    assert 'atnl_model_info{model_id="tiny"} 1.0' in text
    assert "atnl_batch_size_bucket" in text and "atnl_request_seconds_bucket" in text


async def test_openapi_documents_image_media_types(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    interp = spec["paths"]["/v1/interpolate"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "image/png", "image/gif"} <= set(interp)
    assert "application/zip" in spec["paths"]["/v1/hallucinate"]["post"]["responses"]["200"]["content"]
    assert "image/png" in str(spec["components"]["schemas"])
