"""Multipart inputs of the inference routes that FastAPI's typed form fields cannot
check alone: uploads that are files, labels named by the model, and options given
in the query string.

Options (steps, method, format, preprocess, ...) are typed form fields; a name the
form does not carry may also come from the query string (``/v1/interpolate?format=gif``).
``QueryOptionsRoute`` merges those into the parsed form, so FastAPI validates them
once, by the same declaration, whichever way they came.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response, UploadFile
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from service.errors import InvalidInput
from service.tensors import NPY_BODIES, sends_npy

SEED_MAX = 2**32 - 1
"""Largest ``seed``: the range every generator (numpy, torch) accepts the same way."""


def upload_field(name: str, k: int) -> str:
    """How errors name the ``k``-th upload of form field ``name``: files[3] (another field: its name)."""
    return f"{name}[{k}]" if name == "files" else name


def upload_fields(name: str, count: int) -> list[str]:
    """``upload_field`` of each of ``count`` uploads: files[0], files[1], ..."""
    return [upload_field(name, k) for k in range(count)]


async def read_uploads(files: Sequence[UploadFile], field: str = "files") -> list[bytes]:
    """The bytes of each upload: at least one, each a non-empty file. How many files and how large
    each may be (ATNL_MAX_FILES, ATNL_MAX_UPLOAD_BYTES) is checked once, on the stream, by
    service.body_caps, before the form is parsed."""
    if not files:
        raise InvalidInput(f"send at least one image in '{field}'", field=field)
    out = []
    for name, f in zip(upload_fields(field, len(files)), files, strict=True):
        if not hasattr(f, "read"):  # a plain text field where a file is expected
            raise InvalidInput(f"{name} must be a file upload (multipart with a filename), not a text field", field=field)
        data = await f.read()
        if not data:
            raise InvalidInput(f"{name} is empty", field=field)
        out.append(data)
    return out


def parse_labels(raw: Sequence[str], label_names: list[str], count: int) -> list[int]:
    """Label indices from a JSON array or comma-separated names (or repeated fields), one per image."""
    items: list[Any] = []
    for value in raw:
        if not isinstance(value, str):
            raise InvalidInput("labels must be a text field, not a file", field="labels")
        value = value.strip()
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: thousands of nested '['
                raise InvalidInput(f"labels is not a valid JSON array: {str(e)[:100]}", field="labels") from e
            if not isinstance(parsed, list) or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in parsed):
                raise InvalidInput("labels must be a flat JSON array of names, or comma-separated names", field="labels")
            items.extend(parsed)
        else:
            items.extend(part for part in value.split(","))
    names = [str(x).strip() for x in items]
    if len(names) != count:
        raise InvalidInput(f"{len(names)} labels for {count} images; send one label per image, in upload order", field="labels")
    index = {name: k for k, name in enumerate(label_names)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        shown = [n[:32] for n in unknown[:10]]
        raise InvalidInput(f"unknown labels {shown}; this model's labels are {label_names}", field="labels")
    return [index[n] for n in names]


class QueryOptionsRequest(Request):
    """A request whose form also holds the query parameters the body does not carry."""

    async def _get_form(self, **limits: Any) -> FormData:
        form = await super()._get_form(**limits)
        extra = [(k, v) for k, v in self.query_params.multi_items() if k not in form]
        if extra:
            self._form = form = FormData([*form.multi_items(), *extra])
        return form


class QueryOptionsRoute(APIRoute):
    """The route class of the inference router: handlers see a ``QueryOptionsRequest``; a route
    with an ``application/x-npy`` handler (``NPY_BODIES``) gives such bodies to it instead."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        npy_handler = NPY_BODIES.get(self.path_format)

        async def with_query_options(request: Request) -> Response:
            if npy_handler is not None and sends_npy(request):  # the binary tensor path: no form to parse
                return await npy_handler(request)
            return await handler(QueryOptionsRequest(request.scope, request.receive))

        return with_query_options
