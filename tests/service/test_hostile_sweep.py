"""A hostile sweep against a real `atnl serve` process: every case below is refused
with the 4xx problem+json it should get; there is no 5xx and no crash, the server's peak
memory stays under PEAK_RSS_MB, and the model store is byte for byte what it was.

Odd but valid images (16-bit, CMYK, palette, animated PNG, phone MPO) are answered 200 at
the end: the sweep does not pass by refusing everything.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.servers import Server, memory_mb
from service.store import ModelStore
from tests.service.helpers import PROBLEM
from tests.service.images import big_digit_png, mpo_of, png_declaring, png_of

pytestmark = pytest.mark.e2e
PEAK_RSS_MB = 1024
"""Bound on the server's peak resident memory over the whole sweep, MiB. The process holds
~0.45 GiB once torch and the model are loaded; every image that could cost more is refused
from its header (ATNL_MAX_PIXELS, ATNL_MAX_DECODED_BYTES) before it is decoded."""
BOUND_FILLERS = {
    "ATNL_MAX_FILES": "8",
    "ATNL_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "ATNL_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
    "ATNL_MAX_JSON_BYTES": str(256 * 1024),
    "ATNL_MAX_FIELD_BYTES": "4096",
    "ATNL_MAX_LATENTS": "64",
}
"""The server's limits for the sweep: tighter than the defaults, so crossing them is cheap."""


@dataclass
class Case:
    name: str
    method: str
    url: str
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    field: str | None = None
    """The form or JSON field the problem must name (its ``field``; ``files[3]`` names ``files``),
    where one input is at fault."""
    lying_length: int | None = None
    """Send ``kwargs["content"]`` with this Content-Length (far more than is sent): httpx will not."""

    def send(self, http: httpx.Client) -> httpx.Response:
        if self.lying_length is None:
            return http.request(self.method, self.url, **self.kwargs)
        conn = HTTPConnection(http.base_url.host, http.base_url.port, timeout=30)
        try:
            conn.putrequest(self.method, self.url)
            for name, value in {**self.kwargs.get("headers", {}), "Content-Length": str(self.lying_length)}.items():
                conn.putheader(name, value)
            conn.endheaders(self.kwargs["content"])
            r = conn.getresponse()
            return httpx.Response(r.status, headers=r.getheaders(), content=r.read())
        finally:
            conn.close()


def image_file(data: bytes, name: str = "x.png", media: str = "image/png") -> list:
    return [("files", (name, data, media))]


def encoded(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def text_bomb_png(ink: bytes) -> bytes:
    """A valid PNG carrying a zTXt chunk that inflates to 64 MiB (Pillow stops at 1 MiB)."""
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (64 * 1024 * 1024), 9))
    return ink[:33] + bomb + ink[33:]


def sof_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def blank(mode: str, size: tuple[int, int] = (64, 64), value: int = 255) -> Image.Image:
    return Image.new(mode, size, value if mode not in ("RGB", "CMYK", "RGBA") else (value,) * len(mode))


def image_cases(digits) -> list[Case]:
    ink = png_of(digits[2][0])
    jpeg = encoded(Image.open(io.BytesIO(ink)).convert("RGB").resize((280, 280)), "JPEG")
    frames = [blank("L"), Image.open(io.BytesIO(ink))]
    sixteen_blank = encoded(Image.fromarray(np.full((40, 40), 65535, np.uint16)), "PNG")
    transparent = blank("P", value=0)
    transparent.info["transparency"] = 0
    bad_crc = bytearray(ink)
    bad_crc[29] ^= 0xFF  # inside IHDR's CRC
    files = {
        "empty file": (b"", 422),
        "PNG signature only": (ink[:8], 422),
        "truncated PNG": (ink[: len(ink) // 2], 422),
        "truncated JPEG": (jpeg[: len(jpeg) // 3], 422),
        "random bytes": (np.random.default_rng(0).bytes(4096), 422),
        "plain text": (b"hello, I am a digit", 422),
        "HTML": (b"<html><script>alert(1)</script></html>", 422),
        "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>', 422),
        "PDF": (b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", 422),
        "polyglot HTML then PNG": (b"<html><!--" + ink + b"--></html>", 422),
        "polyglot GIF + zip (GIFAR)": (encoded(blank("L"), "GIF") + b"PK\x03\x04" + b"\0" * 26, 422),
        "polyglot PDF then JPEG": (b"%PDF-1.4\n" + jpeg, 422),
        "PNG with a broken CRC": (bytes(bad_crc), 422),
        "animated GIF": (encoded(frames[1].convert("P"), "GIF", save_all=True, append_images=[frames[0].convert("P")]), 422),
        "palette GIF": (encoded(blank("P"), "GIF"), 422),
        "BMP": (encoded(blank("RGB"), "BMP"), 422),
        "TIFF in CMYK": (encoded(blank("CMYK"), "TIFF"), 422),
        "WEBP": (encoded(blank("RGB"), "WEBP"), 422),
        "16-bit PNG, blank page": (sixteen_blank, 422),
        "CMYK JPEG, blank page": (encoded(blank("CMYK"), "JPEG"), 422),
        "palette PNG, all transparent": (encoded(transparent, "PNG"), 422),
        "animated PNG, blank frames": (encoded(blank("L"), "PNG", save_all=True, append_images=[blank("L", value=250)]), 422),
        "1x1 PNG": (encoded(blank("L", (1, 1), 0), "PNG"), 422),
        "PNG declaring 0x0": (png_declaring(0, 0), 422),
        "PNG bomb declaring 20000x20000": (png_declaring(20000, 20000), 413),
        "PNG bomb declaring 7000x7000": (png_declaring(7000, 7000), 413),
        "6300x6300 RGBA PNG (159 MB decoded)": (big_digit_png(digits[3][0], 6300), 413),
        "JPEG whose SOF claims 65500x65500": (sof_claiming(jpeg, 65500, 65500), 413),
        "PNG with a zTXt decompression bomb": (text_bomb_png(ink), 422),
        "file over ATNL_MAX_UPLOAD_BYTES": (b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * 1024 * 1024), 413),
    }
    cases = [
        Case(f"encode: {name}", "POST", "/v1/encode", status, {"files": image_file(data)}, "files[0]")
        for name, (data, status) in files.items()
    ]
    cases += [
        Case(
            "encode: JPEG bytes labelled image/png",
            "POST",
            "/v1/encode",
            422,
            {"files": image_file(b"\xff\xd8\xff\xe0" + b"\0" * 64, "x.png")},
            "files[0]",
        ),
        Case("encode: nine files over ATNL_MAX_FILES", "POST", "/v1/encode", 413, {"files": image_file(ink) * 9}, "files"),
        Case("encode: no files field", "POST", "/v1/encode", 422, {"files": [("other", ("a.png", ink, "image/png"))]}),
        Case("encode: files as a text field", "POST", "/v1/encode", 422, {"data": {"files": "not a file"}}),
        Case("encode: JSON body", "POST", "/v1/encode", 422, {"json": {"files": ["aGVsbG8="]}}),
        Case("encode: urlencoded body", "POST", "/v1/encode", 422, {"data": {"x": "1"}}),
        Case(
            "encode: multipart without its boundary",
            "POST",
            "/v1/encode",
            400,
            {"content": b"--xx\r\n\r\n", "headers": {"content-type": "multipart/form-data"}},
        ),
        Case(
            "encode: multipart cut off mid-part",
            "POST",
            "/v1/encode",
            422,
            {
                "content": b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n\x89PNG',
                "headers": {"content-type": "multipart/form-data; boundary=xx"},
            },
        ),
        Case("encode: preprocess=magic", "POST", "/v1/encode", 422, {"files": image_file(ink), "data": {"preprocess": "magic"}}),
    ]
    return cases


def interpolate_cases(digits) -> list[Case]:
    a, b = png_of(digits[0][0]), png_of(digits[5][0])
    pair = {"start": ("a.png", a, "image/png"), "end": ("b.png", b, "image/png")}
    blank_png = png_of(np.zeros((28, 28)))
    options = {
        "steps=1000": ({"steps": "1000"}, 422, "steps"),
        "steps=1": ({"steps": "1"}, 422, None),
        "steps=abc": ({"steps": "abc"}, 422, None),
        "method=cubic": ({"method": "cubic"}, 422, None),
        "format=bmp": ({"format": "bmp"}, 422, None),
    }
    cases = [
        Case(f"interpolate: {name}", "POST", "/v1/interpolate", status, {"files": pair, "data": data}, where)
        for name, (data, status, where) in options.items()
    ]
    cases += [
        Case("interpolate: no end image", "POST", "/v1/interpolate", 422, {"files": {"start": pair["start"]}}),
        Case(
            "interpolate: blank start image",
            "POST",
            "/v1/interpolate",
            422,
            {"files": {"start": ("a.png", blank_png, "image/png"), "end": pair["end"]}},
            "start",
        ),
    ]
    return cases


def hallucinate_cases(digits) -> list[Case]:
    few = [f for k in (1, 1, 4, 4) for f in image_file(png_of(digits[k][0]))]
    forms = {
        "three labels for four images": ({"labels": "1,1,4", "per_class": "1"}, 422, "labels"),
        "unknown labels": ({"labels": "1,1,4,forty-two", "per_class": "1"}, 422, "labels"),
        "labels nested 2000 deep": ({"labels": "[" * 2000, "per_class": "1"}, 422, "labels"),
        "labels over ATNL_MAX_FIELD_BYTES": ({"labels": "1," * 5000, "per_class": "1"}, 413, "labels"),
        "labels as a JSON object": ({"labels": '{"a": 1}', "per_class": "1"}, 422, "labels"),
        "per_class=0": ({"labels": "1,1,4,4", "per_class": "0"}, 422, None),
        "per_class=-3": ({"labels": "1,1,4,4", "per_class": "-3"}, 422, None),
        "n=10**9": ({"labels": "1,1,4,4", "n": str(10**9)}, 422, None),
        "seed=-1": ({"labels": "1,1,4,4", "per_class": "1", "seed": "-1"}, 422, None),
        "seed=2**64": ({"labels": "1,1,4,4", "per_class": "1", "seed": str(2**64)}, 422, None),
        "strategy=teleport": ({"labels": "1,1,4,4", "per_class": "1", "strategy": "teleport"}, 422, None),
        "format=tar": ({"labels": "1,1,4,4", "per_class": "1", "format": "tar"}, 422, None),
        "filter=strict": ({"labels": "1,1,4,4", "per_class": "1", "filter": "strict"}, 422, None),
    }
    return [
        Case(f"hallucinate: {name}", "POST", "/v1/hallucinate", status, {"files": few, "data": data}, where)
        for name, (data, status, where) in forms.items()
    ]


def decode_cases() -> list[Case]:
    z8 = [0.5] * 8
    raw = {
        "malformed JSON": (b'{"latents": [[0.1, 0.2', 422),
        "empty body": (b"", 422),
        "a JSON array": (b"[[0.1]]", 422),
        "no latents": (b'{"z": [[0.1]]}', 422),
        "latents not a list": (b'{"latents": "eight"}', 422),
        "NaN": (json.dumps({"latents": [[float("nan")] * 8]}).encode(), 422),
        "Infinity": (json.dumps({"latents": [[float("inf")] * 8]}).encode(), 422),
        "1e400 (inf once parsed)": (b'{"latents": [[1e400, 0, 0, 0, 0, 0, 0, 0]]}', 422),
        "huge finite 1e30": (json.dumps({"latents": [[1e30] * 8]}).encode(), 422),
        "wrong length 7": (json.dumps({"latents": [[0.5] * 7]}).encode(), 422),
        "ragged vectors": (json.dumps({"latents": [z8, [0.5] * 9]}).encode(), 422),
        "no vectors": (b'{"latents": []}', 422),
        "strings": (json.dumps({"latents": [["a"] * 8]}).encode(), 422),
        "nested 5000 deep": (b'{"latents": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422),
        "65 vectors over ATNL_MAX_LATENTS": (json.dumps({"latents": [z8] * 65}).encode(), 413),
        "body over ATNL_MAX_JSON_BYTES": (b'{"latents": [[' + b"0.1, " * 60_000 + b"0.1]]}", 413),
    }
    cases = [
        Case(f"decode: {name}", "POST", "/v1/decode", status, {"content": body, "headers": {"content-type": "application/json"}})
        for name, (body, status) in raw.items()
    ]

    def chunked() -> Iterator[bytes]:
        yield b'{"latents": [['
        for _ in range(400):
            yield b"0.1, " * 200

    cases += [
        Case(
            "decode: chunked body over ATNL_MAX_JSON_BYTES",
            "POST",
            "/v1/decode",
            413,
            {"content": chunked(), "headers": {"content-type": "application/json"}},
        ),
        Case(
            "decode: Content-Length of 10 GB",
            "POST",
            "/v1/decode",
            413,
            {"content": b"{}", "headers": {"content-type": "application/json"}},
            lying_length=10**10,
        ),
        Case(
            "encode: multipart declaring 1 GB",
            "POST",
            "/v1/encode",
            413,
            {"content": b"--xx\r\n", "headers": {"content-type": "multipart/form-data; boundary=xx"}},
            lying_length=2**30,
        ),
    ]
    return cases


def model_and_job_cases() -> list[Case]:
    def train(body: Any) -> dict[str, Any]:
        return {"json": body}

    configs = {
        "batch_size=10**7": ({"batch_size": 10**7}, "batch_size"),
        "latent_dim=10**6": ({"latent_dim": 10**6}, "latent_dim"),
        "epochs=10**6": ({"epochs": 10**6}, "epochs"),
        "threads=10**4": ({"threads": 10**4}, "threads"),
        "lr=-1": ({"lr": -1}, None),
        "test_fraction=2": ({"test_fraction": 2}, None),
        "device=tpu": ({"device": "tpu"}, None),
        "family=gan": ({"family": "gan"}, None),
        "dataset folder:/etc": ({"dataset": "folder:/etc"}, "dataset"),
        "dataset mnist-idx:../../": ({"dataset": "mnist-idx:../../"}, "dataset"),
        "epochs as a string": ({"epochs": "5"}, None),
        "a JSON list": ([1, 2, 3], None),
    }
    cases = [Case(f"train: {name}", "POST", "/v1/train", 422, train(body), where) for name, (body, where) in configs.items()]
    cases += [
        Case(
            "train: malformed JSON",
            "POST",
            "/v1/train",
            422,
            {"content": b'{"epochs": ', "headers": {"content-type": "application/json"}},
        ),
        Case("activate: unknown model", "POST", "/v1/models/no-such-model/activate", 404, {"json": {}}),
        Case("activate: a path as id", "POST", "/v1/models/..%2F..%2Fetc/activate", 404, {"json": {}}),
        Case("activate: hidden id", "POST", "/v1/models/.tiny.tmp-1/activate", 422, {"json": {}}),
        Case("activate: form body (cross-site)", "POST", "/v1/models/tiny/activate", 415, {"data": {"x": "1"}}),
        Case("job: unknown id", "GET", "/v1/jobs/no-such-job", 404),
        Case("job: cancel an unknown id", "DELETE", "/v1/jobs/no-such-job", 404),
        Case("no such route", "GET", "/v1/teleport", 404),
        Case("wrong method", "GET", "/v1/encode", 405),
    ]
    return cases


def store_digest(store: Path) -> str:
    """sha256 over every path, size and content under ``store`` (hidden files included)."""
    h = hashlib.sha256()
    for p in sorted(store.rglob("*")):
        h.update(str(p.relative_to(store)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def valid_but_odd(digits) -> dict[str, bytes]:
    ink = Image.fromarray((255 - digits[8][0] * 255).astype(np.uint8)).resize((84, 84))
    palette = ink.convert("P")
    return {
        "16-bit PNG": encoded(Image.fromarray(np.asarray(ink, np.uint16) * 257), "PNG"),
        "CMYK JPEG": encoded(ink.convert("CMYK"), "JPEG"),
        "palette PNG": encoded(palette, "PNG"),
        "animated PNG": encoded(ink, "PNG", save_all=True, append_images=[ink.rotate(10)]),
        "grey + alpha PNG": encoded(ink.convert("LA"), "PNG"),
        "phone MPO": mpo_of(digits[8][0]),
    }


@pytest.fixture
def server(tmp_path: Path, tiny_checkpoint: Path, redis_url: str) -> Iterator[Server]:
    store = tmp_path / "store"
    shutil.copytree(tiny_checkpoint, store / "tiny")
    ModelStore(store).set_active("tiny")
    env = {"ATNL_MODEL_STORE": str(store), "ATNL_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/3", **BOUND_FILLERS}
    api = Server.serve(env, tmp_path)
    try:
        yield api.start()
    finally:
        api.stop()


def test_hostile_sweep(server: Server, digits) -> None:
    cases = image_cases(digits) + interpolate_cases(digits) + hallucinate_cases(digits)
    cases += decode_cases() + model_and_job_cases()
    assert len(cases) >= 60 and len({c.name for c in cases}) == len(cases)
    store = Path(server.env["ATNL_MODEL_STORE"])
    before = store_digest(store)
    wrong = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for case in cases:
            r = case.send(http)
            problem = r.json() if r.headers.get("content-type") == PROBLEM else {}
            named = str(problem.get("field", "")).split("[")[0]
            if r.status_code != case.status or not problem or (case.field and named != case.field.split("[")[0]):
                wrong.append(f"{case.name}: {r.status_code} {r.headers.get('content-type')} {r.text[:160]}")
            assert server.exited() is None, f"the server died on {case.name!r}"
        statuses = [http.get("/healthz").status_code, http.get("/readyz").status_code]
        odd = {name: http.post("/v1/encode", files=image_file(data)).status_code for name, data in valid_but_odd(digits).items()}
        metrics = http.get("/metrics").text
    peak = memory_mb(server.pid, "VmHWM")
    print(f"hostile sweep: {len(cases)} cases, peak RSS of the server {peak:.0f} MiB (bound {PEAK_RSS_MB})")
    assert wrong == [], "\n".join(wrong)
    assert statuses == [200, 200]
    assert odd == dict.fromkeys(odd, 200), odd
    assert 'status="5' not in metrics, "a 5xx was counted"
    assert peak < PEAK_RSS_MB, f"the server peaked at {peak:.0f} MiB"
    assert store_digest(store) == before, "the sweep changed the model store"
