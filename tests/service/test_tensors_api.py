"""The binary tensor path (service/tensors.py; docs/API.md §2): .npy bodies for encode and decode,
.npy answers on ``Accept: application/x-npy``, the same numbers as the PNG path, and every
malformed array refused with a problem (never unpickled)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.tensors import NPY
from tests.service.helpers import assert_problem
from tests.service.images import png_of

pytestmark = pytest.mark.anyio


def npy(array: np.ndarray, **kwargs: bool) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def loaded(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


@pytest.fixture
def batch(digits) -> np.ndarray:
    """Three real test digits as an N×1×28×28 uint8 array."""
    return np.stack([(digits[k][0] * 255).round().astype(np.uint8) for k in (0, 3, 7)])[:, None]


async def test_an_npy_encode_gives_the_png_paths_latents(client, batch) -> None:
    r = await client.post("/v1/encode", content=npy(batch), headers={"content-type": NPY})
    assert r.status_code == 200, r.text
    latents = np.asarray(r.json()["latents"])
    files = [("files", (f"{k}.png", png_of(im[0] / 255.0), "image/png")) for k, im in enumerate(batch)]
    via_png = np.asarray((await client.post("/v1/encode", files=files, data={"preprocess": "none"})).json()["latents"])
    assert latents.shape == (3, 8) and np.allclose(latents, via_png, atol=1e-5)
    as_float = await client.post("/v1/encode", content=npy(batch.astype(np.float32) / 255), headers={"content-type": NPY})
    assert np.allclose(np.asarray(as_float.json()["latents"]), latents, atol=1e-5)

    r = await client.post("/v1/encode", content=npy(batch), headers={"content-type": NPY, "accept": NPY})
    assert r.status_code == 200 and r.headers["content-type"] == NPY and r.headers["x-model-id"] == "tiny"
    array = loaded(r.content)
    assert array.dtype == np.float32 and np.allclose(array, latents, atol=1e-6)
    assert np.allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)


async def test_decode_answers_arrays_and_takes_them(client) -> None:
    latents = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    r = await client.post("/v1/decode", json={"latents": latents.tolist()}, headers={"accept": NPY})
    assert r.status_code == 200, r.text
    images = loaded(r.content)
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
    pngs = await client.post("/v1/decode", content=npy(latents), headers={"content-type": NPY})
    assert pngs.status_code == 200 and len(pngs.json()["images"]) == 4 and pngs.json()["model_id"] == "tiny"
    both = await client.post("/v1/decode", content=npy(latents), headers={"content-type": NPY, "accept": NPY})
    assert np.allclose(loaded(both.content), images, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), 422, ["pickle"]),
        (b"\x93NUMPY garbage", 422, [".npy"]),
        (b"PK\x03\x04 not an npz either", 422, [".npy"]),
        (npy(np.zeros((2, 1, 27, 28), np.uint8)), 422, ["1 x 28 x 28"]),
        (npy(np.zeros((1, 28, 28), np.uint8)), 422, ["1 x 28 x 28"]),
        (npy(np.zeros((1, 1, 28, 28), np.int64)), 422, ["uint8"]),
        (npy(np.full((1, 1, 28, 28), 2.0, np.float32)), 422, ["[0, 1]"]),
        (npy(np.full((1, 1, 28, 28), np.nan, np.float32)), 422, ["finite"]),
        (npy(np.zeros((257, 1, 28, 28), np.uint8)), 413, ["ATNL_MAX_FILES"]),
    ],
    ids=["pickle", "garbage", "zip", "side", "ndim", "dtype", "range", "nan", "count"],
)
async def test_malformed_arrays_are_refused(client, body: bytes, status: int, words: list[str]) -> None:
    assert_problem(await client.post("/v1/encode", content=body, headers={"content-type": NPY}), status, *words)


async def test_malformed_latent_arrays_are_refused(client) -> None:
    cases = [
        (np.zeros((2, 7), np.float32), ["N x 8"]),
        (np.full((1, 8), np.inf, np.float32), ["finite"]),
        (np.zeros((1, 8), np.int32), ["float32"]),
        (np.full((1, 8), 1e9, np.float32), ["ATNL_MAX_LATENT_ABS"]),
    ]
    for array, words in cases:
        assert_problem(await client.post("/v1/decode", content=npy(array), headers={"content-type": NPY}), 422, *words)


async def test_an_npy_request_can_pin_its_model(client, batch) -> None:
    headers = {"content-type": NPY}
    body = assert_problem(await client.post("/v1/encode?model_id=other", content=npy(batch), headers=headers), 409, "tiny")
    assert body["active"] == "tiny" and body["requested"] == "other"
    assert (await client.post("/v1/encode?model_id=tiny", content=npy(batch), headers=headers)).status_code == 200
    assert_problem(await client.post("/v1/encode?model_id=../x", content=npy(batch), headers=headers), 422)
