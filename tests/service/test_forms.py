"""Multipart inputs of the inference routes (service/forms.py; docs/API.md §2, §4): uploads within
their limits and named ``files[k]``, labels as a JSON array or comma-separated names checked against
the model's, and options taken from the query string when the form does not carry them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import FastAPI, Form
from fastapi.routing import APIRouter
from httpx import ASGITransport, AsyncClient
from starlette.datastructures import UploadFile

from service.errors import InvalidInput
from service.forms import QueryOptionsRoute, parse_labels, read_uploads, upload_fields

pytestmark = pytest.mark.anyio
NAMES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def uploads(*blobs: bytes) -> list[UploadFile]:
    return [UploadFile(io.BytesIO(b), filename=f"{k}.png") for k, b in enumerate(blobs)]


def test_upload_fields_name_each_upload_by_index() -> None:
    assert upload_fields("files", 3) == ["files[0]", "files[1]", "files[2]"]
    assert upload_fields("start", 0) == []


async def test_read_uploads_gives_the_bytes_in_order() -> None:
    assert await read_uploads(uploads(b"a", b"bc")) == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("blobs", "words", "field"),
    [
        ((), "at least one image", "files"),
        ((b"a", b""), "files[1] is empty", "files"),
    ],
    ids=["none", "empty"],
)
async def test_read_uploads_refuses(blobs, words, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        await read_uploads(uploads(*blobs))
    assert words in caught.value.detail and caught.value.extra["field"] == field


async def test_an_upload_of_another_field_is_named_by_its_field() -> None:
    with pytest.raises(InvalidInput, match="start is empty"):
        await read_uploads(uploads(b""), field="start")


async def test_a_text_field_where_a_file_belongs_is_422() -> None:
    with pytest.raises(InvalidInput, match=r"files\[0\] must be a file upload"):
        await read_uploads(["not a file"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("raw", "count", "want"),
    [
        (["0,9,9"], 3, [0, 9, 9]),
        ([" 3 , 4 "], 2, [3, 4]),
        (['["1", 2, "3"]'], 3, [1, 2, 3]),
        (["5", "6"], 2, [5, 6]),  # repeated fields
        (["7", "[8, 9]"], 3, [7, 8, 9]),  # both kinds at once
    ],
)
def test_labels_as_names_json_or_repeated_fields(raw: list[str], count: int, want: list[int]) -> None:
    assert parse_labels(raw, NAMES, count) == want


def test_labels_are_the_models_names_not_indices() -> None:
    assert parse_labels(["cat,dog"], ["dog", "cat"], 2) == [1, 0]
    with pytest.raises(InvalidInput, match="unknown labels"):
        parse_labels(["0"], ["dog", "cat"], 1)


@pytest.mark.parametrize(
    ("raw", "count", "words"),
    [
        (["0,9,9"], 2, "3 labels for 2 images"),
        (["0,cat"], 2, "unknown labels ['cat']"),
        (["[0, 9"], 2, "not a valid JSON array"),
        (["[" * 5000], 2, "not a valid JSON array"),
        (['[["0"], {"a": 1}]'], 2, "flat JSON array"),
        (["[true, 1]"], 2, "flat JSON array"),
        (['{"a": 1}'], 1, "unknown labels"),
    ],
    ids=["count", "unknown", "bad json", "nested 5000 deep", "nested", "booleans", "an object is a name"],
)
def test_bad_labels_are_422_naming_the_field(raw: list[str], count: int, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_labels(raw, NAMES, count)
    assert words in caught.value.detail and caught.value.extra["field"] == "labels"


def test_unknown_labels_are_shown_short_and_few() -> None:
    many = [f"{'x' * 40}{k:02d}" for k in range(12)]
    with pytest.raises(InvalidInput) as caught:
        parse_labels([",".join(many)], NAMES, 12)
    shown = caught.value.detail.split("]")[0]
    assert shown.count("'x") == 10 and "x" * 33 not in shown


def test_a_file_where_labels_belong_is_422() -> None:
    with pytest.raises(InvalidInput, match="text field"):
        parse_labels([UploadFile(io.BytesIO(b"0"))], NAMES, 1)  # type: ignore[list-item]


@pytest.fixture
async def options_client() -> AsyncIterator[AsyncClient]:
    router = APIRouter(route_class=QueryOptionsRoute)

    @router.post("/echo")
    async def echo(steps: Annotated[int, Form()] = 8, tags: Annotated[list[str] | None, Form()] = None) -> dict:
        return {"steps": steps, "tags": tags}

    app = FastAPI()
    app.include_router(router)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def test_query_options_fill_what_the_form_does_not_carry(options_client: AsyncClient) -> None:
    assert (await options_client.post("/echo", data={"x": "1"})).json() == {"steps": 8, "tags": None}
    assert (await options_client.post("/echo?steps=4", data={"x": "1"})).json()["steps"] == 4
    assert (await options_client.post("/echo?steps=4", data={"steps": "6"})).json()["steps"] == 6  # the form wins
    assert (await options_client.post("/echo?tags=a&tags=b", data={"x": "1"})).json()["tags"] == ["a", "b"]


async def test_query_options_are_validated_by_the_same_declaration(options_client: AsyncClient) -> None:
    r = await options_client.post("/echo?steps=abc", data={"x": "1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
