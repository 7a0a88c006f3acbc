"""Request-body caps counted while the body streams in (service/body_caps.py; docs/API.md §4):
the middleware on a bare ASGI app, the multipart tally part by part, and the caps through the
real app, chunked and declared."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.body_caps import BodyCaps, MultipartTally
from service.settings import Settings
from tests.service.helpers import PROBLEM, assert_problem, client_for
from tests.service.images import png_of

pytestmark = pytest.mark.anyio
BOUNDARY = "xXx"


def caps(**limits: int) -> Settings:
    return Settings(_env_file=None, **limits)  # type: ignore[call-arg]


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body of (field name, filename or None for a text field, bytes) parts."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def chunks(parts: list[bytes], pulled: list[int]) -> AsyncIterator[bytes]:
    """``parts`` as a chunked body, noting in ``pulled`` each part the server asked for."""
    for k, part in enumerate(parts):
        pulled.append(k)
        yield part


# --- MultipartTally, fed by hand ------------------------------------------------------------------


def tally_of(body: bytes, settings: Settings, step: int = 1) -> MultipartTally:
    """A tally fed ``body`` ``step`` bytes at a time (one byte: the worst split a network makes)."""
    tally = MultipartTally(BOUNDARY.encode(), settings)
    for k in range(0, len(body), step):
        tally.feed(body[k : k + step])
    return tally


def test_tally_within_every_cap_finds_nothing() -> None:
    body = multipart([("files", "a.png", b"x" * 100), ("files", "b.png", b"y" * 100), ("labels", None, b"0,1")])
    tally = tally_of(body, caps(max_upload_bytes=100, max_field_bytes=3, max_files=2))
    assert tally.failure is None and tally.files == 2


def test_tally_names_the_upload_over_its_cap_by_index_and_filename() -> None:
    body = multipart([("files", "a.png", b"x" * 100), ("files", "big.png", b"y" * 101)])
    failure = tally_of(body, caps(max_upload_bytes=100)).failure
    assert failure is not None and failure.status == 413
    assert failure.extra["field"] == "files[1]"
    assert "files[1]" in failure.detail and "'big.png'" in failure.detail and "ATNL_MAX_UPLOAD_BYTES" in failure.detail


def test_tally_holds_text_fields_to_their_own_cap() -> None:
    body = multipart([("files", "a.png", b"x" * 50), ("labels", None, b"0," * 10)])
    failure = tally_of(body, caps(max_upload_bytes=1000, max_field_bytes=19)).failure
    assert failure is not None and failure.extra["field"] == "labels" and "ATNL_MAX_FIELD_BYTES" in failure.detail


def test_tally_counts_files_not_fields() -> None:
    fields = [("labels", None, b"0")] * 5
    assert tally_of(multipart([*fields, ("files", "a.png", b"x")]), caps(max_files=1)).failure is None
    failure = tally_of(multipart([("files", f"{k}.png", b"x") for k in range(3)]), caps(max_files=2)).failure
    assert failure is not None and failure.extra["field"] == "files[2]" and "ATNL_MAX_FILES" in failure.detail


def test_tally_keeps_its_first_failure_and_stops_counting() -> None:
    body = multipart([("files", "big.png", b"x" * 500), *[("files", f"{k}.png", b"x") for k in range(5)]])
    tally = tally_of(body, caps(max_upload_bytes=100, max_files=2), step=64)
    assert tally.failure is not None and tally.failure.extra["field"] == "files[0]" and tally.files == 1


def test_malformed_multipart_is_left_to_the_form_parser() -> None:
    tally = tally_of(b"--xXx\r\nno headers here\r\n\r\n" + b"\xff" * 64, caps(max_upload_bytes=1))
    assert tally.failure is None  # nothing raised: the form parser answers it with a 400


# --- BodyCaps on a bare ASGI app ------------------------------------------------------------------


class Echo:
    """An ASGI app that reads the whole body and answers 200 with its length; records what it saw."""

    def __init__(self) -> None:
        self.called = False
        self.scopes: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.called = True
        self.scopes.append(scope["type"])
        if scope["type"] != "http":
            return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(size).encode()})


async def through(limits: Settings, headers: dict[str, str], parts: list[bytes]) -> tuple[int, dict[str, str], bytes, Echo]:
    """Send ``parts`` (one http.request message each) through BodyCaps around Echo."""
    app = Echo()
    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    messages = [{"type": "http.request", "body": p, "more_body": k < len(parts) - 1} for k, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await BodyCaps(app, limits)(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, app


async def test_a_body_within_the_cap_reaches_the_app_whole() -> None:
    status, _, body, app = await through(caps(max_json_bytes=100), {"content-type": "application/json"}, [b"x" * 60, b"y" * 40])
    assert (status, body) == (200, b"100") and app.called


async def test_a_declared_length_over_the_cap_is_refused_before_the_app_runs() -> None:
    headers = {"content-type": "application/json", "content-length": "101"}
    status, out, body, app = await through(caps(max_json_bytes=100), headers, [b"x" * 101])
    problem = json.loads(body)
    assert status == 413 and out["content-type"] == PROBLEM and out["connection"] == "close"
    assert problem["field"] == "body" and "ATNL_MAX_JSON_BYTES" in problem["detail"] and not app.called


async def test_a_content_length_that_is_not_a_number_is_422() -> None:
    status, _, body, app = await through(caps(), {"content-type": "application/json", "content-length": "12abc"}, [b"{}"])
    assert status == 422 and "Content-Length" in json.loads(body)["detail"] and not app.called


async def test_a_chunked_body_over_the_cap_replaces_the_apps_answer() -> None:
    status, out, body, app = await through(caps(max_json_bytes=100), {"content-type": "application/json"}, [b"x" * 60] * 3)
    assert app.called and status == 413 and out["content-type"] == PROBLEM
    assert "ATNL_MAX_JSON_BYTES" in json.loads(body)["detail"]


async def test_multipart_bodies_get_the_request_cap_and_others_the_json_cap() -> None:
    limits = caps(max_json_bytes=100, max_request_bytes=1000, max_upload_bytes=1000)
    form = multipart([("files", "a.png", b"x" * 300)])
    status, _, _, _ = await through(limits, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, [form])
    assert status == 200
    status, _, body, _ = await through(limits, {"content-type": "text/plain"}, [form])
    assert status == 413 and "ATNL_MAX_JSON_BYTES" in json.loads(body)["detail"]
    status, _, body, _ = await through(limits, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, [form] * 4)
    assert status == 413 and "ATNL_MAX_REQUEST_BYTES" in json.loads(body)["detail"]


async def test_other_scopes_pass_through_untouched() -> None:
    app = Echo()

    async def never() -> dict:
        raise AssertionError("the middleware read a lifespan message")

    await BodyCaps(app, caps(max_json_bytes=1))({"type": "lifespan"}, never, never)
    assert app.scopes == ["lifespan"]


# --- the caps through the real app ---------------------------------------------------------------------


async def test_request_over_max_request_bytes_is_413(settings, redis_conn) -> None:
    async for client in client_for(settings.model_copy(update={"max_request_bytes": 200_000})):
        huge = b"x" * 300_000
        r = await client.post("/v1/encode", files=[("files", ("h.png", huge, "image/png"))])
        assert_problem(r, 413, "ATNL_MAX_REQUEST_BYTES")


async def test_chunked_body_over_the_cap_is_413_while_streaming(settings, redis_conn) -> None:
    tight = settings.model_copy(update={"max_json_bytes": 1000, "max_request_bytes": 50_000})
    async for client in client_for(tight):
        pulled: list[int] = []
        body = [b'{"latents": [[' + b"0.1, " * 100] + [b"0.1, " * 100] * 50
        r = await client.post("/v1/decode", content=chunks(body, pulled), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers  # chunked
        assert_problem(r, 413, "ATNL_MAX_JSON_BYTES")
        assert len(pulled) < len(body)  # refused before the rest was read


async def test_oversized_parts_are_refused_as_they_stream(settings, digits, redis_conn) -> None:
    tight = settings.model_copy(update={"max_upload_bytes": 5_000, "max_field_bytes": 100, "max_files": 3})
    ctype = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
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
