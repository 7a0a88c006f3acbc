"""Uploaded data sets: upload an archive of labelled images, list, describe, delete.

Upload and delete are guarded like training (the token is checked before the body is
read); unpacking and decoding run in a worker thread (service.dataset_store), never on
the event loop. Train on one with POST /v1/train ``{"dataset": "upload:ID"}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from service.archive_members import ARCHIVE_FIELD, ArchiveCaps
from service.dataset_schemas import DatasetInfo, DatasetList, archive_request_body
from service.datasets import DATASET_ID
from service.deps import DatasetStoreDep, SettingsDep, TokenDep
from service.disconnect import ClientDisconnected, cancel_on_disconnect
from service.errors import BadImage, DatasetNotFound, Forbidden, InvalidInput, PayloadTooLarge, Unauthorized, problems
from service.imaging import ImageCaps
from service.objects import StoreUnavailable

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DatasetId = Annotated[
    str, Path(description="A data set id, as GET /v1/datasets lists them.", json_schema_extra={"pattern": DATASET_ID.pattern})
]
"""Checked against the pattern by the store (422 'invalid data set id'), not here: one check, one message."""
MAX_FORM_PARTS = 8
"""Parts of an upload's form parsed at most; only ``archive`` is accepted."""


async def archive_upload(request: Request) -> UploadFile:
    """The one ``archive`` file of an upload form; InvalidInput for anything else in it."""
    try:
        form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
    except ClientDisconnect:  # the parser has closed (and so removed) what it had spooled
        raise ClientDisconnected("the client closed the connection during the upload") from None
    extra = sorted({name for name in form if name != ARCHIVE_FIELD})
    files = form.getlist(ARCHIVE_FIELD)
    if extra:
        await form.close()
        raise InvalidInput(f"unknown form field {extra[0][:64]!r}: send only '{ARCHIVE_FIELD}'", field=extra[0][:64])
    if len(files) != 1 or not isinstance(files[0], UploadFile):
        await form.close()
        raise InvalidInput(f"send one zip or tar.gz file as the multipart file field '{ARCHIVE_FIELD}'", field=ARCHIVE_FIELD)
    return files[0]


@router.post(
    "",
    status_code=201,
    response_model=DatasetInfo,
    dependencies=[TokenDep],
    openapi_extra=archive_request_body(),
    responses={
        201: {
            "description": 'Stored: its record. Train on it with POST /v1/train {"dataset": "upload:ID"}.',
            "headers": {"Location": {"description": "The data set's URL.", "schema": {"type": "string"}}},
        },
        **problems(400, Unauthorized, Forbidden, PayloadTooLarge, InvalidInput, BadImage, StoreUnavailable),
    },
)
async def upload_dataset(request: Request, response: Response, datasets: DatasetStoreDep, settings: SettingsDep) -> DatasetInfo:
    """Upload a zip or tar.gz of labelled images (one folder per label, or images plus labels.csv;
    labels.txt gives the order). Every image is decoded and stored again as PNG."""
    archive = await archive_upload(request)
    caps = ArchiveCaps.from_settings(settings)
    image_caps = ImageCaps(settings.max_pixels, settings.max_decoded_bytes)
    created: list[str] = []

    def create() -> dict[str, Any]:
        record = datasets.create(archive.file, caps, image_caps, archive.filename)
        created.append(record["id"])
        return record

    try:
        async with cancel_on_disconnect():
            record = await anyio.to_thread.run_sync(create)  # runs to its end even if the client leaves
            await anyio.lowlevel.checkpoint()  # where a client that left meanwhile cancels the request
    except ClientDisconnected:  # no one will learn its id: keep nothing
        for dataset_id in created:
            await anyio.to_thread.run_sync(datasets.delete, dataset_id)
        raise
    finally:
        await archive.close()
    response.headers["Location"] = str(request.url_for("get_dataset", dataset_id=record["id"]).path)
    return DatasetInfo(**record)


@router.get("", response_model=DatasetList, responses=problems(StoreUnavailable))
async def list_datasets(datasets: DatasetStoreDep) -> DatasetList:
    """Every uploaded data set, oldest first."""
    return DatasetList(datasets=[DatasetInfo(**d) for d in await anyio.to_thread.run_sync(datasets.listing)])


@router.get("/{dataset_id}", response_model=DatasetInfo, responses=problems(DatasetNotFound, StoreUnavailable))
async def get_dataset(dataset_id: DatasetId, datasets: DatasetStoreDep) -> DatasetInfo:
    """One uploaded data set: its labels in order, images per label, image shape."""
    return DatasetInfo(**await anyio.to_thread.run_sync(datasets.describe, dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    dependencies=[TokenDep],
    responses={204: {"description": "Deleted."}, **problems(Unauthorized, Forbidden, DatasetNotFound, StoreUnavailable)},
)
async def delete_dataset(dataset_id: DatasetId, datasets: DatasetStoreDep) -> Response:
    """Delete an uploaded data set. Models trained on it keep its id, labels and counts in their record."""
    await anyio.to_thread.run_sync(datasets.delete, dataset_id)
    return Response(status_code=204)
