"""Schemathesis hooks for the ATNL API: what a client knows that JSON Schema cannot say.

    SCHEMATHESIS_HOOKS=tests.service.schemathesis_hooks \\
        schemathesis --config-file tests/service/schemathesis.toml run http://HOST:PORT/openapi.json

- An image part is a PNG or JPEG with some ink on it, where the schema can only say
  "binary": the image parts of a valid (positive) case are sent as real images.
- POST /v1/hallucinate takes one label per image: a valid case is sent with as many
  labels as files (the shorter list repeated).
- POST /v1/datasets takes a zip or tar.gz of labelled images where the schema can only
  say "binary": a valid case sends examples/digits.zip.

Both are done on the request sent, not on the case: schemathesis takes any case whose
body was edited and holds files for an invalid one. A failure's "Reproduce with" shows
the case as generated.
- DELETE /v1/jobs/{id} cancels a job, it does not remove it (docs/API.md, "Training
  jobs"): a GET after it that shows the job canceled or stopped is that contract, not a
  use-after-free. Any other answer still fails.

Every other check runs as schemathesis has it.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import schemathesis
from PIL import Image, ImageDraw
from schemathesis.transport import SerializationContext
from schemathesis.transport.requests import multipart_serializer
from schemathesis.transport.serialization import Binary


def _image(seed: int) -> bytes:
    """A digit-like stroke, dark ink on light paper or light on dark, 28 to 300 px, L/RGB/RGBA, PNG or JPEG."""
    rng = random.Random(seed)
    w, h = rng.randint(28, 300), rng.randint(28, 300)
    dark_on_light = rng.random() < 0.5
    image = Image.new("L", (w, h), 235 if dark_on_light else 0)
    draw, ink, width = ImageDraw.Draw(image), 20 if dark_on_light else 255, max(2, min(w, h) // 8)
    left, top, right, bottom = w * 0.25, h * 0.2, w * 0.75, h * 0.8
    if rng.random() < 0.5:
        draw.ellipse((left, top, right, bottom), outline=ink, width=width)
    else:
        draw.line([(left, top), (right, top), (left, bottom)], fill=ink, width=width)
    image = image.convert(rng.choice(["L", "RGB", "RGBA"]))
    buf = io.BytesIO()
    image.save(buf, format="JPEG" if image.mode != "RGBA" and rng.random() < 0.3 else "PNG", quality=90)
    return buf.getvalue()


IMAGES = [_image(seed) for seed in range(16)]
"""A few images, reused: cases differ in everything else."""
DATASET_ARCHIVE = (Path(__file__).resolve().parents[2] / "examples" / "digits.zip").read_bytes()
"""A labelled data set (one folder a label) for POST /v1/datasets."""


def image_parts(operation: Any) -> list[str]:
    """The multipart parts an operation lists as images (its requestBody ``encoding``)."""
    content = operation.definition.raw.get("requestBody", {}).get("content", {})
    return list(content.get("multipart/form-data", {}).get("encoding", {}))


def _real_images(body: dict[str, Any], names: list[str], seed: int) -> None:
    for name in names:
        value = body.get(name)
        if isinstance(value, list):
            body[name] = [Binary(IMAGES[(seed + k) % len(IMAGES)]) for k in range(len(value))]
        elif value is not None:
            body[name] = Binary(IMAGES[seed % len(IMAGES)])


def _one_label_per_file(body: dict[str, Any]) -> None:
    files, labels = body.get("files"), body.get("labels")
    if isinstance(files, list) and isinstance(labels, list) and files and labels:
        n = max(len(files), len(labels))
        body["files"] = [files[k % len(files)] for k in range(n)]
        body["labels"] = [labels[k % len(labels)] for k in range(n)]


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    """A valid multipart case goes out with real images (and, to hallucinate, one label per file)."""
    names = image_parts(case.operation)
    if not names or case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    body = dict(case.body)
    if case.operation.path == "/v1/hallucinate":
        _one_label_per_file(body)
    if case.operation.path == "/v1/datasets" and "archive" in body:
        body["archive"] = Binary(DATASET_ARCHIVE)
    else:
        _real_images(body, names, sum(map(ord, case.id)))
    kwargs.update(multipart_serializer(SerializationContext(case=case), body))


@schemathesis.hook
def filter_failure(context: schemathesis.HookContext, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    """False drops the failure: only a job shown canceled or stopped after its DELETE."""
    if type(failure).__name__ != "UseAfterFree" or case.operation.path != "/v1/jobs/{job_id}" or case.method != "GET":
        return True
    try:
        return response.json().get("status") not in ("canceled", "stopped")
    except ValueError:
        return True
