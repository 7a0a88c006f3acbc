"""Bad requests against the app in process (docs/API.md §3, §4): each answer is a 4xx
application/problem+json that names the field at fault, and nothing stored changes. Bad and
hostile images, options, labels, latents, seeds and training configs; images over their pixel
and decoded-size caps, refused from the header; the token; Redis down; an unhandled error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from httpx import ASGITransport, AsyncClient
from PIL import Image
from pydantic import SecretStr

from benchmarks.servers import free_port
from tests.service.helpers import PROBLEM, assert_problem, client_for
from tests.service.images import big_digit_png, mpo_of, png_declaring, png_of

pytestmark = pytest.mark.anyio


def one_file(data: bytes, name: str = "x.png", media: str = "image/png") -> list:
    return [("files", (name, data, media))]


def gif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


# --- images -----------------------------------------------------------------------------------------


async def test_bad_images(client, digits) -> None:
    ok = png_of(digits[2][0])
    cases = {
        "garbage": (b"this is not an image", "not a png or jpeg"),
        "gif": (gif_bytes(), "gif is not accepted"),
        "blank": (png_of(np.zeros((28, 28))), "no ink"),
        "truncated": (ok[: len(ok) // 2], "files[1]"),
    }
    for name, (data, words) in cases.items():
        r = await client.post("/v1/encode", files=[("files", ("ok.png", ok, "image/png")), ("files", (name, data, "image/png"))])
        assert_problem(r, 422, words)
    assert_problem(await client.post("/v1/encode", files=[("other", ("a.png", ok, "image/png"))]), 422, "files")


async def test_images_over_max_pixels_are_413_from_their_header(client, settings, redis_conn) -> None:
    for side in (20000, 10000, 7000):  # above Pillow's error, above its warning, above ATNL_MAX_PIXELS only
        body = assert_problem(await client.post("/v1/encode", files=one_file(png_declaring(side, side))), 413, "ATNL_MAX_PIXELS")
        assert body["field"] == "files[0]"
    photo = io.BytesIO()
    Image.new("RGB", (800, 800), "white").save(photo, format="JPEG")
    async for roomy in client_for(settings.model_copy(update={"max_pixels": 500 * 500})):
        r = await roomy.post("/v1/encode", files=one_file(photo.getvalue(), "big.jpg", "image/jpeg"))
        assert_problem(r, 413, "ATNL_MAX_PIXELS")


async def test_decoded_size_and_request_budget_are_checked_before_decoding(settings, digits, redis_conn) -> None:
    big = big_digit_png(digits[3][0], 6300)  # ~0.2 MB on the wire, 159 MB as RGBA
    assert len(big) < 400_000
    async for client in client_for(settings):
        body = assert_problem(await client.post("/v1/encode", files=one_file(big)), 413, "ATNL_MAX_DECODED_BYTES", "files[0]")
        assert body["field"] == "files[0]"
    grey = big_digit_png(digits[3][0], 2000, mode="L")  # 4 MB decoded each
    tight = settings.model_copy(update={"max_request_decoded_bytes": 6_000_000})
    async for client in client_for(tight):
        assert (await client.post("/v1/encode", files=one_file(grey))).status_code == 200
        r = await client.post("/v1/encode", files=one_file(grey) + one_file(grey))
        assert_problem(r, 413, "ATNL_MAX_REQUEST_DECODED_BYTES")


async def test_multi_picture_jpeg_from_a_phone_is_accepted(client, digits) -> None:
    r = await client.post("/v1/encode", files=one_file(mpo_of(digits[7][0]), "phone.jpg", "image/jpeg"))
    assert r.status_code == 200, r.text
    assert np.isclose(np.linalg.norm(r.json()["latents"][0]), 1.0, atol=1e-5)


# --- options, labels, latents ---------------------------------------------------------------------


async def test_bad_options(client, digits) -> None:
    a, b = png_of(digits[0][0]), png_of(digits[9][0])
    pair = {"start": ("a.png", a, "image/png"), "end": ("b.png", b, "image/png")}
    assert_problem(await client.post("/v1/interpolate", files=pair, data={"steps": "1000"}), 422, "ATNL_MAX_STEPS")
    assert_problem(await client.post("/v1/interpolate", files=pair, data={"steps": "1"}), 422, "steps")
    assert_problem(await client.post("/v1/interpolate", files=pair, data={"method": "cubic"}), 422, "method")
    assert_problem(await client.post("/v1/interpolate", files=pair, data={"format": "bmp"}), 422, "format")
    assert_problem(await client.post("/v1/interpolate?steps=abc", files=pair), 422, "steps")
    assert_problem(await client.post("/v1/interpolate", files={"start": pair["start"]}), 422, "end")
    assert_problem(
        await client.post("/v1/encode?preprocess=magic", files=[("files", ("a.png", a, "image/png"))]), 422, "preprocess"
    )

    files = [("files", ("a.png", a, "image/png")), ("files", ("b.png", b, "image/png"))]
    hall = "/v1/hallucinate"
    assert_problem(await client.post(hall, files=files, data={"labels": "0,9,9", "per_class": "2"}), 422, "3 labels for 2 images")
    assert_problem(await client.post(hall, files=files, data={"labels": "0,cat", "per_class": "2"}), 422, "unknown labels")
    assert_problem(await client.post(hall, files=files, data={"labels": "[0, 9", "per_class": "2"}), 422, "json")
    assert_problem(await client.post(hall, files=files, data={"labels": "0,9"}), 422, "per_class or n")
    assert_problem(await client.post(hall, files=files, data={"labels": "0,9", "per_class": "1", "n": "3"}), 422, "not both")
    assert_problem(await client.post(hall, files=files, data={"labels": "0,9", "n": "999999"}), 422, "ATNL_MAX_HALLUCINATE_N")
    assert_problem(await client.post(hall, files=files, data={"labels": "0,9", "n": "5", "strategy": "x"}), 422, "strategy")
    # Labels without examples and without examples on both sides are skipped, not an error.
    made = await client.post(hall, files=files, data={"labels": "0,9", "per_class": "1", "filter": "none"})
    assert made.status_code == 200 and sorted(i["label"] for i in made.json()["images"]) == ["0", "9"]

    assert_problem(await client.post("/v1/decode", json={"latents": [[0.1, 0.2]]}), 422, "length 8")
    assert_problem(await client.post("/v1/decode", json={"latents": [[0.1] * 8, [0.1] * 7]}), 422, "same length")
    assert_problem(await client.post("/v1/decode", json={"latents": []}), 422)
    assert_problem(await client.post("/v1/decode", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_problem(await client.get("/v1/nothing-here"), 404)


async def test_deeply_nested_labels_are_422_not_500(client, digits) -> None:
    files = one_file(png_of(digits[0][0])) + one_file(png_of(digits[9][0]))
    r = await client.post("/v1/hallucinate", files=files, data={"labels": "[" * 5000, "per_class": "1"})
    assert assert_problem(r, 422, "labels")["field"] == "labels"
    r = await client.post("/v1/hallucinate", files=files, data={"labels": '[["0"], {"a": 1}]', "per_class": "1"})
    assert_problem(r, 422, "flat json array")
    # 100,000 of them are refused by the per-field cap while the form streams in.
    r = await client.post("/v1/hallucinate", files=files, data={"labels": "[" * 100_000, "per_class": "1"})
    assert assert_problem(r, 413, "ATNL_MAX_FIELD_BYTES")["field"] == "labels"


async def test_huge_finite_latents_are_422_not_nan_images(client) -> None:
    for bad in ([1e30] * 8, [1e5] + [0.0] * 7, [float("nan")] * 8):
        r = await client.post("/v1/decode", content=json.dumps({"latents": [bad]}), headers={"content-type": "application/json"})
        assert assert_problem(r, 422, "latents")["field"] == "latents"
    ok = await client.post("/v1/decode", json={"latents": [[3.0] * 8]})
    assert ok.status_code == 200, ok.text


async def test_seed_is_bounded(client, digits) -> None:
    files = one_file(png_of(digits[0][0])) + one_file(png_of(digits[2][0]))
    for seed in ("-1", str(2**32), str(10**30)):
        r = await client.post("/v1/hallucinate", files=files, data={"labels": "0,2", "per_class": "1", "seed": seed})
        assert_problem(r, 422, "seed")
        r = await client.post(f"/v1/hallucinate?seed={seed}", files=files, data={"labels": "0,2", "per_class": "1"})
        assert_problem(r, 422, "seed")
    r = await client.post("/v1/hallucinate", files=files, data={"labels": "0,2", "per_class": "1", "seed": str(2**32 - 1)})
    assert r.status_code == 200, r.text


# --- training, models, jobs, the token, Redis ----------------------------------------------------------


async def test_bad_training_requests_change_nothing(client, redis_conn) -> None:
    for body, words in [
        ({"epochs": "many"}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"wings": 2}, "wings"),
        ({"family": "gan"}, "family"),
        ({"epochs": 10**6}, "ATNL_MAX_TRAIN_EPOCHS"),
        ({"latent_dim": 2}, "latent_dim"),
    ]:
        assert_problem(await client.post("/v1/train", json=body), 422, words)
    assert redis_conn.keys("rq:job:*") == []
    assert_problem(await client.get("/v1/jobs/no-such-job"), 404)
    assert_problem(await client.delete("/v1/jobs/no-such-job"), 404)
    assert_problem(await client.post("/v1/models/nope/activate", json={}), 404)
    assert_problem(await client.post("/v1/models/..%2F..%2Fetc/activate", json={}), 404)
    assert_problem(await client.post("/v1/models/.tmp-x/activate", json={}), 422, "invalid model id")
    listing = (await client.get("/v1/models")).json()
    assert listing["active"] == "tiny" and [m["id"] for m in listing["models"]] == ["tiny"]


async def test_token_guards_train_activate_and_delete_only(settings, digits, redis_conn) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    async for client in client_for(guarded):
        assert_problem(await client.post("/v1/train", json={"epochs": 1}), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_problem(await client.post("/v1/train", json={"epochs": 1}, headers=wrong), 401)
        assert_problem(await client.post("/v1/models/tiny/activate", json={}), 401)
        assert_problem(await client.delete("/v1/jobs/whatever"), 401)
        good = {"Authorization": "Bearer s3cret"}
        r = await client.post("/v1/train", json={"epochs": 1}, headers=good)
        assert r.status_code == 202
        assert (await client.get(r.json()["status_url"])).json()["status"] == "queued"  # reads stay open
        assert (await client.post("/v1/models/tiny/activate", json={}, headers=good)).status_code == 200
        assert (await client.delete(f"/v1/jobs/{r.json()['job_id']}", headers=good)).json()["status"] == "canceled"
        enc = await client.post("/v1/encode", files=[("files", ("a.png", png_of(digits[1][0]), "image/png"))])
        assert enc.status_code == 200


async def test_redis_down_training_503_inference_works(settings, digits, redis_conn) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 0.5})
    async for client in client_for(down):
        assert_problem(await client.post("/v1/train", json={"epochs": 1}), 503, "unreachable")
        assert_problem(await client.get("/v1/jobs/abc"), 503)
        pair = {"start": ("a.png", png_of(digits[1][0]), "image/png"), "end": ("b.png", png_of(digits[4][0]), "image/png")}
        assert (await client.post("/v1/interpolate", files=pair)).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_unhandled_errors_are_counted_in_request_metrics(client) -> None:
    app = client.app  # type: ignore[attr-defined]

    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test-only/broken", broken)
    async with AsyncClient(transport=ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t") as raw:
        r = await raw.get("/test-only/broken")
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    text = (await client.get("/metrics")).text
    assert 'atnl_requests_total{method="GET",route="/test-only/broken",status="500"} 1.0' in text
