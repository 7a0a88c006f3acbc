"""Request-body caps enforced while the body streams in, before any route sees it.

A pure ASGI middleware: it counts the bytes of every ``http.request`` message, so a
chunked body (no Content-Length) is held to the same cap as a declared one, and it
follows multipart bodies part by part, so one oversized file or text field is
refused as soon as it crosses its cap, not after the whole form was spooled to disk.

    multipart/form-data   ATNL_MAX_REQUEST_BYTES in all, ATNL_MAX_UPLOAD_BYTES per file,
                          ATNL_MAX_FIELD_BYTES per text field, ATNL_MAX_FILES files
    POST /v1/datasets     the same, but its ``archive`` file ATNL_MAX_ARCHIVE_BYTES, and
                          the body that plus ARCHIVE_BODY_SLACK
    application/x-npy     ATNL_MAX_REQUEST_BYTES (service.tensors)
    anything else (JSON)  ATNL_MAX_JSON_BYTES

A refused body gets 413 application/problem+json naming the cap and the field;
whatever the application had started to answer for the cut-off body is replaced.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.archive_members import ARCHIVE_FIELD
from service.errors import InvalidInput, PayloadTooLarge, ServiceError, problem
from service.forms import upload_field
from service.settings import Settings
from service.tensors import NPY

ARCHIVE_UPLOAD = ("POST", "/v1/datasets")
"""The request whose ``archive`` file is held to ATNL_MAX_ARCHIVE_BYTES instead of ATNL_MAX_UPLOAD_BYTES."""
ARCHIVE_BODY_SLACK = 64 * 1024
"""Bytes an archive upload's body may carry beyond ATNL_MAX_ARCHIVE_BYTES: multipart boundaries and part headers."""


class MultipartTally:
    """Sizes of the parts of a multipart body as its bytes arrive; ``failure`` once one is over a cap."""

    def __init__(self, boundary: bytes, settings: Settings, archive_field: str | None = None) -> None:
        """``archive_field``: the file field held to ATNL_MAX_ARCHIVE_BYTES (on an archive upload)."""
        self.settings = settings
        self.archive_field = archive_field
        self.failure: ServiceError | None = None
        self.files = 0
        self._seen: dict[str, int] = {}
        """Parts per field name so far: errors name the part as ``files[3]``, as the routes do."""
        self._size = 0
        self._is_file = False
        self._name = ""
        self._filename = ""
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_part,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
            },
        )
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken or self.failure is not None or not chunk:
            return
        try:
            self._parser.write(chunk)
        except Exception:  # malformed multipart: the form parser answers it with a 400; stop counting parts
            self._broken = True

    def _part_begin(self) -> None:
        self._size, self._is_file, self._name, self._filename, self._disposition = 0, False, "", "", b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")[:64]
        index = self._seen[name] = self._seen.get(name, -1) + 1
        self._is_file = b"filename" in options
        self._name = upload_field(name, index) if self._is_file else name
        self._filename = options.get(b"filename", b"").decode("latin-1")[:64]
        if self._is_file:
            self.files += 1
            if self.files > self.settings.max_files:
                self.failure = PayloadTooLarge(
                    f"more than {self.settings.max_files} files sent (ATNL_MAX_FILES)", field=self._name or "files"
                )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._is_file and self._name == self.archive_field:
            cap, setting = self.settings.max_archive_bytes, "ATNL_MAX_ARCHIVE_BYTES"
        elif self._is_file:
            cap, setting = self.settings.max_upload_bytes, "ATNL_MAX_UPLOAD_BYTES"
        else:
            cap, setting = self.settings.max_field_bytes, "ATNL_MAX_FIELD_BYTES"
        if self._size > cap and self.failure is None:
            what = f"file {self._name} ({self._filename!r})" if self._is_file else f"field '{self._name}'"
            self.failure = PayloadTooLarge(f"{what} is larger than {cap} bytes ({setting})", field=self._name or "body")


class BodyCaps:
    """ASGI middleware: the caps above, counted on the stream."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media, options = parse_options_header(headers.get("content-type", ""))
        multipart = media.lower() == b"multipart/form-data"
        archive = multipart and (scope["method"], scope["path"]) == ARCHIVE_UPLOAD
        if archive:
            limit, setting = self.settings.max_archive_bytes + ARCHIVE_BODY_SLACK, "ATNL_MAX_ARCHIVE_BYTES"
        elif multipart or media.lower() == NPY.encode():
            limit, setting = self.settings.max_request_bytes, "ATNL_MAX_REQUEST_BYTES"
        else:
            limit, setting = self.settings.max_json_bytes, "ATNL_MAX_JSON_BYTES"
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await self._answer(scope, send, InvalidInput(f"Content-Length {declared[:32]!r} is not a number", field="body"))
            return
        if declared is not None and int(declared) > limit:
            too_big = PayloadTooLarge(f"request body of {int(declared)} bytes exceeds {limit} ({setting})", field="body")
            await self._answer(scope, send, too_big)
            return
        boundary = options.get(b"boundary") if multipart else None
        tally = MultipartTally(boundary, self.settings, ARCHIVE_FIELD if archive else None) if boundary else None
        received = 0
        failure: ServiceError | None = None
        started = False

        async def receive_counted() -> Message:
            nonlocal received, failure
            if failure is not None:
                raise failure
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    failure = PayloadTooLarge(f"request body exceeds {limit} bytes ({setting})", field="body")
                elif tally is not None:
                    tally.feed(chunk)
                    failure = tally.failure
                if failure is not None:
                    raise failure
            return message

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if failure is not None and not started:
                return  # the application's answer to a body we cut off; ours goes out below
            started = True
            await send(message)

        try:
            await self.app(scope, receive_counted, send_unless_refused)
        except Exception:
            if failure is None or started:
                raise
        if failure is not None and not started:
            await self._answer(scope, send, failure)

    @staticmethod
    async def _answer(scope: Scope, send: Send, error: ServiceError) -> None:
        response = problem(error.status, error.title, error.detail, scope.get("path", ""), error.headers, **error.extra)
        response.headers["Connection"] = "close"  # the rest of the body is never read

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
