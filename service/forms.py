"""Multipart inputs of the inference routes: uploads within limits, labels, options.

Options (steps, method, format, preprocess, ...) are form fields; the same
names are also read from the query string when the form does not carry them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request, UploadFile

from service.errors import InvalidInput, PayloadTooLarge
from service.settings import Settings

T = TypeVar("T")
PREPROCESS = ("mnist", "none")
"""``mnist``: DESIGN §5 preprocessing (default); ``none``: grey + resize only."""


async def read_uploads(files: Sequence[UploadFile], settings: Settings, field: str = "files") -> list[bytes]:
    """The bytes of each upload, refusing more than ATNL_MAX_FILES files or ATNL_MAX_UPLOAD_BYTES each."""
    if not files:
        raise InvalidInput(f"send at least one image in '{field}'")
    if len(files) > settings.max_files:
        raise PayloadTooLarge(f"{len(files)} files sent; the limit is {settings.max_files} (ATNL_MAX_FILES)")
    out = []
    for f in files:
        data = await f.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"{f.filename or field} is larger than {settings.max_upload_bytes} bytes (ATNL_MAX_UPLOAD_BYTES)"
            )
        if not data:
            raise InvalidInput(f"{f.filename or field} is empty")
        out.append(data)
    return out


def option(request: Request, name: str, form_value: T | None, parse: Callable[[str], T], default: T) -> T:
    """The form value, else the query parameter ``name`` parsed, else ``default``."""
    if form_value is not None:
        return form_value
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as e:
        raise InvalidInput(f"query parameter {name}={raw!r} is not valid: {e}") from e


def choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def parse_labels(raw: Sequence[str], label_names: list[str], count: int) -> list[int]:
    """Label indices from a JSON array or comma-separated names (or repeated fields), one per image."""
    items: list[Any] = []
    for value in raw:
        value = value.strip()
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as e:
                raise InvalidInput(f"labels is not a valid JSON array: {e}") from e
            if not isinstance(parsed, list):
                raise InvalidInput("labels must be a JSON array or comma-separated names")
            items.extend(parsed)
        else:
            items.extend(part for part in value.split(","))
    names = [str(x).strip() for x in items]
    if len(names) != count:
        raise InvalidInput(f"{len(names)} labels for {count} images; send one label per image, in upload order")
    index = {name: k for k, name in enumerate(label_names)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise InvalidInput(f"unknown labels {unknown}; this model's labels are {label_names}")
    return [index[n] for n in names]
