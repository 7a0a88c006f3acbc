"""Bad input answers 4xx application/problem+json and changes nothing; auth; Redis down."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from tests.service.helpers import client_for
from tests.service.images import png_of

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def assert_problem(r, status: int, words: str = "") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert words.lower() in body["detail"].lower()
    return body


def gif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


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


async def test_limits(settings, digits, redis_conn) -> None:
    tight = settings.model_copy(
        update={"max_upload_bytes": 300, "max_files": 2, "max_pixels": 500 * 500, "max_request_bytes": 200_000}
    )
    photo = io.BytesIO()
    Image.new("RGB", (800, 800), "white").save(photo, format="JPEG")
    async for client in client_for(tight):
        small = png_of(digits[4][0])
        assert len(small) <= 300
        assert_problem(
            await client.post("/v1/encode", files=[("files", ("big.jpg", photo.getvalue(), "image/jpeg"))]),
            413,
            "ATNL_MAX_UPLOAD_BYTES",
        )
        three = [("files", (f"{k}.png", small, "image/png")) for k in range(3)]
        assert_problem(await client.post("/v1/encode", files=three), 413, "ATNL_MAX_FILES")
        huge = b"x" * 300_000
        assert_problem(
            await client.post("/v1/encode", files=[("files", ("h.png", huge, "image/png"))]), 413, "ATNL_MAX_REQUEST_BYTES"
        )
    roomy = settings.model_copy(update={"max_pixels": 500 * 500})
    async for client in client_for(roomy):
        assert_problem(
            await client.post("/v1/encode", files=[("files", ("big.jpg", photo.getvalue(), "image/jpeg"))]),
            413,
            "ATNL_MAX_PIXELS",
        )


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
    from benchmarks.servers import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 0.5})
    async for client in client_for(down):
        assert_problem(await client.post("/v1/train", json={"epochs": 1}), 503, "unreachable")
        assert_problem(await client.get("/v1/jobs/abc"), 503)
        pair = {"start": ("a.png", png_of(digits[1][0]), "image/png"), "end": ("b.png", png_of(digits[4][0]), "image/png")}
        assert (await client.post("/v1/interpolate", files=pair)).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
