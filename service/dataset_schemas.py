"""Request and response bodies of the data set routes (docs/API.md §7, "Your own data")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.archive_members import ARCHIVE_FIELD
from service.datasets import DATASET_ID

ARCHIVE_TYPES = "application/zip, application/gzip"
"""Media types of the archive part (its Content-Type is not checked: its first bytes are)."""


class SizeRange(BaseModel):
    min: tuple[int, int] = Field(description="The smallest height and the smallest width among the images, pixels.")
    max: tuple[int, int] = Field(description="The largest height and the largest width among the images, pixels.")


class DatasetInfo(BaseModel):
    id: str = Field(pattern=DATASET_ID.pattern, description='Train on it with POST /v1/train {"dataset": "upload:ID"}.')
    name: str = Field(description="The archive's file name, without folders or unusual characters.")
    labels: list[str] = Field(description="Label names in their order (labels.txt, else numeric).")
    counts: dict[str, int] = Field(description="Images of each label.")
    image_shape: tuple[int, int, int] = Field(
        description="[C, H, W]: C is 3 when any image is in colour (an RGB image whose channels differ), else 1; "
        "H and W are the smallest height and width among the images."
    )
    size_range: SizeRange
    images: int = Field(description="Images in all.")
    created_at: str = Field(description="When it was stored, ISO 8601, UTC.")
    bytes: int = Field(description="Bytes it takes on the server (re-encoded PNGs and label files).")


class DatasetList(BaseModel):
    datasets: list[DatasetInfo] = Field(description="Every uploaded data set, oldest first.")


def archive_request_body() -> dict[str, Any]:
    """``openapi_extra`` of POST /v1/datasets, which reads its form itself (after the token check)."""
    schema = {
        "type": "object",
        "title": "DatasetUpload",
        "properties": {
            ARCHIVE_FIELD: {
                "type": "string",
                "format": "binary",
                "description": "A zip or tar.gz of labelled images (PNG or JPEG): one folder per label, or "
                "images plus labels.csv; optional labels.txt gives the label order. At most ATNL_MAX_ARCHIVE_BYTES.",
            }
        },
        "required": [ARCHIVE_FIELD],
        "additionalProperties": False,
    }
    media = {"schema": schema, "encoding": {ARCHIVE_FIELD: {"contentType": ARCHIVE_TYPES}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": media}}}
