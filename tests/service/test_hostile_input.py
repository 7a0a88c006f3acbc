"""Hostile input found in review (issue 11): each answer is a 4xx problem+json that names the
field, nothing stored changes, and big images cost bounded memory and time."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from httpx import ASGITransport, AsyncClient

from tests.service.helpers import PROBLEM, assert_problem, client_for
from tests.service.images import big_digit_png, mpo_of, noisy_png_of, png_declaring, png_of

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def one_file(data: bytes, name: str = "x.png", media: str = "image/png") -> list:
    return [("files", (name, data, media))]


async def test_decompression_bomb_headers_are_413_not_500(client) -> None:
    for side in (20000, 10000, 7000):  # above Pillow's error, above its warning, above ATNL_MAX_PIXELS only
        body = assert_problem(await client.post("/v1/encode", files=one_file(png_declaring(side, side))), 413, "ATNL_MAX_PIXELS")
        assert body["field"] == "files[0]"


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


async def test_multi_picture_jpeg_from_a_phone_is_accepted(client, digits) -> None:
    r = await client.post("/v1/encode", files=one_file(mpo_of(digits[7][0]), "phone.jpg", "image/jpeg"))
    assert r.status_code == 200, r.text
    assert np.isclose(np.linalg.norm(r.json()["latents"][0]), 1.0, atol=1e-5)


async def test_seed_is_bounded(client, digits) -> None:
    files = one_file(png_of(digits[0][0])) + one_file(png_of(digits[2][0]))
    for seed in ("-1", str(2**32), str(10**30)):
        r = await client.post("/v1/hallucinate", files=files, data={"labels": "0,2", "per_class": "1", "seed": seed})
        assert_problem(r, 422, "seed")
        r = await client.post(f"/v1/hallucinate?seed={seed}", files=files, data={"labels": "0,2", "per_class": "1"})
        assert_problem(r, 422, "seed")
    r = await client.post("/v1/hallucinate", files=files, data={"labels": "0,2", "per_class": "1", "seed": str(2**32 - 1)})
    assert r.status_code == 200, r.text


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


def test_a_big_png_is_decoded_in_bounded_memory(tmp_path, digits) -> None:
    """A 5000x5000 RGBA PNG (100 MB decoded) once took > 1 GB as float arrays at full size."""
    path = tmp_path / "big.png"
    path.write_bytes(big_digit_png(digits[5][0], 5000))
    script = textwrap.dedent(
        f"""
        import re, time
        from pathlib import Path
        from service.imaging import DecodeLimits, load_image

        def high_water_mb():  # VmHWM: this process's peak RSS (ru_maxrss would carry pytest's over the exec)
            return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

        base = high_water_mb()
        start = time.perf_counter()
        x = load_image(Path({str(path)!r}).read_bytes(), 28, True, DecodeLimits(40_000_000, 2**30))
        print(x.shape, x.max(), time.perf_counter() - start, high_water_mb() - base)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    shape, peak_mb = out.stdout.split(")")[0], float(out.stdout.split()[-1])
    print("5000x5000 RGBA PNG:", out.stdout.strip())
    assert shape == "(28, 28"
    assert peak_mb < 350, f"decoding took {peak_mb:.0f} MB above the interpreter's baseline"


async def chunks(parts: list[bytes], pulled: list[int]):
    for k, part in enumerate(parts):
        pulled.append(k)
        yield part


async def test_chunked_body_over_the_cap_is_413_while_streaming(settings, redis_conn) -> None:
    tight = settings.model_copy(update={"max_json_bytes": 1000, "max_request_bytes": 50_000})
    async for client in client_for(tight):
        pulled: list[int] = []
        body = [b'{"latents": [[' + b"0.1, " * 100] + [b"0.1, " * 100] * 50
        r = await client.post("/v1/decode", content=chunks(body, pulled), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers  # chunked
        assert_problem(r, 413, "ATNL_MAX_JSON_BYTES")
        assert len(pulled) < len(body)  # refused before the rest was read


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "xXx") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def test_oversized_parts_are_refused_as_they_stream(settings, digits, redis_conn) -> None:
    tight = settings.model_copy(update={"max_upload_bytes": 5_000, "max_field_bytes": 100, "max_files": 3})
    ctype = {"content-type": "multipart/form-data; boundary=xXx"}
    ok = png_of(digits[1][0])
    async for client in client_for(tight):
        body = multipart([("files", "a.png", ok), ("files", "big.png", b"\x89PNG" + b"\0" * 200_000)])
        pulled: list[int] = []
        pieces = [body[k : k + 4096] for k in range(0, len(body), 4096)]
        r = await client.post("/v1/encode", content=chunks(pieces, pulled), headers=ctype)
        assert assert_problem(r, 413, "ATNL_MAX_UPLOAD_BYTES", "files[1]", "big.png")["field"] == "files[1]"
        assert len(pulled) < len(pieces) // 2  # stopped early, not after spooling 200 KB

        body = multipart([("files", "a.png", ok), ("labels", None, b"0," * 200)])
        r = await client.post("/v1/hallucinate", content=body, headers=ctype)
        assert assert_problem(r, 413, "ATNL_MAX_FIELD_BYTES")["field"] == "labels"

        body = multipart([("files", f"{k}.png", ok) for k in range(4)])
        assert_problem(await client.post("/v1/encode", content=body, headers=ctype), 413, "ATNL_MAX_FILES")
        assert (await client.post("/v1/encode", content=multipart([("files", "a.png", ok)]), headers=ctype)).status_code == 200


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


async def test_hallucinate_uses_one_model_across_a_hot_swap(client, settings, digits) -> None:
    """A model with other label names swapped in mid-request must not answer a request whose
    labels were checked against the old one: every answer is the old model's or a 422."""
    words = settings.model_store / "tiny-words"
    shutil.copytree(settings.model_store / "tiny", words)
    meta = json.loads((words / "model.json").read_text())
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    meta["labels"]["names"] = names
    (words / "model.json").write_text(json.dumps(meta))
    # Over 1 MB each: uploads that big are spooled to disk and read back in a thread, which is
    # where a swap could land between the label check and the encoding.
    images = [noisy_png_of(digits[0][0]), noisy_png_of(digits[0][1]), noisy_png_of(digits[9][0])]
    assert min(map(len, images)) > 1024 * 1024
    files = [f for data in images for f in one_file(data)]

    async def hallucinate():
        return await client.post("/v1/hallucinate", files=files, data={"labels": "0,0,9", "per_class": "1", "seed": "1"})

    async def swaps():
        for target in ["tiny-words", "tiny"] * 8:
            await client.post(f"/v1/models/{target}/activate")
            await asyncio.sleep(0)

    *answers, _ = await asyncio.gather(*[hallucinate() for _ in range(20)], swaps())
    for r in answers:
        if r.status_code == 200:
            body = r.json()
            assert body["model_id"] == "tiny", "labels checked on one model, images made by another"
            assert {i["label"] for i in body["images"]} <= set("0123456789")
        else:
            assert_problem(r, 422, "unknown labels")
