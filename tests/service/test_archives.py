"""Hostile archives are refused (service/archives.py, service/dataset_store.py; docs/API.md §7):
each one built as real zip or tar.gz bytes, uploaded to POST /v1/datasets, and answered with
problem+json naming the member at fault, leaving nothing in the data set folder. Then the
extraction itself: no write outside the destination, nothing left after a failure."""

from __future__ import annotations

import gzip
import io
import os
import secrets
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from service.archive_members import ArchiveCaps, Destination, member_parts
from service.archives import extract_archive
from service.errors import InvalidInput, PayloadTooLarge
from service.settings import Settings
from tests.service.archives import (
    empty_store_settings,
    gzip_of,
    labelled,
    patch_zip_headers,
    tar_entry,
    tar_gz_of,
    tiny_png,
    zip_of,
    zip_symlink,
)
from tests.service.helpers import assert_problem

pytestmark = pytest.mark.anyio
GOOD = labelled(["1", "2", "3"])
"""A valid three-label set, to which each case adds its poison."""
PNG = tiny_png(99)
CAPS = {
    "max_archive_members": 64,
    "max_member_bytes": 1024 * 1024,
    "max_archive_unpacked_bytes": 4 * 1024 * 1024,
    "max_pixels": 10_000,
}


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    """An empty model store (no model is trained for these tests) and small archive caps."""
    return empty_store_settings(tmp_path, redis_url, **CAPS)


def csv_set(rows: str, order: str | None) -> list[tuple[str, bytes]]:
    members = [(f"{name}.png", tiny_png(k)) for k, name in enumerate("abc")] + [("labels.csv", rows.encode())]
    return members + ([("labels.txt", order.encode())] if order is not None else [])


HOSTILE: list[tuple[str, Callable[[], bytes], int, list[str]]] = [
    ("dot-dot", lambda: zip_of([*GOOD, ("../evil.png", PNG)]), 422, ["'../evil.png'", "'..'"]),
    ("dot-dot inside", lambda: zip_of([*GOOD, ("1/../../evil.png", PNG)]), 422, ["'1/../../evil.png'", "'..'"]),
    ("absolute path", lambda: zip_of([*GOOD, ("/tmp/evil.png", PNG)]), 422, ["'/tmp/evil.png'", "absolute"]),
    ("drive letter", lambda: zip_of([*GOOD, ("C:/evil.png", PNG)]), 422, ["'C:/evil.png'", "absolute"]),
    ("backslash", lambda: zip_of([*GOOD, ("1\\..\\..\\evil.png", PNG)]), 422, ["evil.png", "backslash"]),
    ("control character", lambda: zip_of([*GOOD, ("1/a\x07.png", PNG)]), 422, ["1/a", "control"]),
    ("tar dot-dot", lambda: tar_gz_of([*GOOD, ("../../evil.png", PNG)]), 422, ["'../../evil.png'", "'..'"]),
    ("tar absolute", lambda: tar_gz_of([*GOOD, ("/etc/evil.png", PNG)]), 422, ["'/etc/evil.png'", "absolute"]),
    ("zip symlink", lambda: zip_symlink("1/link.png", "/etc/passwd"), 422, ["'1/link.png'", "symbolic link"]),
    ("tar symlink", lambda: tar_gz_of(GOOD, [tar_entry("1/link.png", tarfile.SYMTYPE, "/etc/passwd")]), 422,
     ["'1/link.png'", "link"]),
    ("tar hard link", lambda: tar_gz_of(GOOD, [tar_entry("2/hard.png", tarfile.LNKTYPE, "1/0.png")]), 422,
     ["'2/hard.png'", "link"]),
    ("tar fifo", lambda: tar_gz_of(GOOD, [tar_entry("3/fifo.png", tarfile.FIFOTYPE)]), 422, ["'3/fifo.png'", "not a regular"]),
    ("tar device", lambda: tar_gz_of(GOOD, [tar_entry("3/dev.png", tarfile.CHRTYPE)]), 422, ["'3/dev.png'", "not a regular"]),
    ("zip in zip, by name", lambda: zip_of([*GOOD, ("1/inner.zip", zip_of(GOOD))]), 422, ["'1/inner.zip'", "inside"]),
    ("tgz in tar.gz, by name", lambda: tar_gz_of([*GOOD, ("1/x.tgz", b"x")]), 422, ["'1/x.tgz'", "inside"]),
    ("zip in zip, by content", lambda: zip_of([*GOOD, ("1/inner.png", zip_of(GOOD))]), 422, ["'1/inner.png'", "is an archive"]),
    ("gzip in tar.gz, by content", lambda: tar_gz_of([*GOOD, ("2/x.png", gzip_of(b"hi"))]), 422, ["'2/x.png'", "is an archive"]),
    ("zip bomb, header ratio", lambda: zip_of([*GOOD, ("1/bomb.png", bytes(512 * 1024))]), 413,
     ["'1/bomb.png'", "ATNL_MAX_COMPRESSION_RATIO"]),
    ("tar.gz bomb, stream ratio", lambda: tar_gz_of([*GOOD, *[(f"1/z{k}.png", bytes(60_000)) for k in range(12)]]), 413,
     ["ATNL_MAX_COMPRESSION_RATIO"]),
    ("lying size header", lambda: patch_zip_headers(zip_of([*GOOD, ("1/liar.png", bytes(2 * 1024 * 1024))]), "1/liar.png",
                                                    file_size=1000), 422, ["'1/liar.png'", "corrupt"]),
    ("member over ATNL_MAX_MEMBER_BYTES", lambda: zip_of([*GOOD, ("1/big.png", os.urandom(1024 * 1024 + 1))]), 413,
     ["'1/big.png'", "ATNL_MAX_MEMBER_BYTES"]),
    ("tar member over ATNL_MAX_MEMBER_BYTES", lambda: tar_gz_of([*GOOD, ("1/big.png", os.urandom(1024 * 1024 + 1))]), 413,
     ["'1/big.png'", "ATNL_MAX_MEMBER_BYTES"]),
    ("unpacked total", lambda: zip_of([*GOOD, *[(f"1/r{k}.png", os.urandom(900 * 1024)) for k in range(5)]]), 413,
     ["ATNL_MAX_ARCHIVE_UNPACKED_BYTES"]),
    ("too many members", lambda: zip_of(labelled(["1", "2", "3"], per_label=22)), 413, ["ATNL_MAX_ARCHIVE_MEMBERS"]),
    ("too many tar members", lambda: tar_gz_of(labelled(["1", "2", "3"], per_label=22)), 413, ["ATNL_MAX_ARCHIVE_MEMBERS"]),
    ("truncated zip", lambda: zip_of(GOOD)[:-40], 422, ["truncated or corrupt"]),
    ("truncated tar.gz", lambda: tar_gz_of(GOOD)[:-40], 422, ["truncated or corrupt"]),
    ("gzip but no tar", lambda: gzip_of(b"just text " * 50), 422, ["truncated or corrupt"]),
    ("encrypted member", lambda: patch_zip_headers(zip_of([*GOOD, ("2/secret.png", PNG)]), "2/secret.png", flag_bits=1), 422,
     ["'2/secret.png'", "encrypted"]),
    ("bzip2 member", lambda: zip_of(GOOD, zipfile.ZIP_BZIP2), 422, ["'1/0.png'", "compression method"]),
    ("duplicate name", lambda: zip_of([*GOOD, ("1/0.png", PNG)]), 422, ["'1/0.png'", "twice"]),
    ("duplicate once normalised", lambda: zip_of([*GOOD, ("./1//0.png", PNG)]), 422, ["'./1//0.png'", "twice"]),
    ("tar duplicate", lambda: tar_gz_of([*GOOD, ("2/1.png", PNG)]), 422, ["'2/1.png'", "twice"]),
    ("file and folder", lambda: zip_of([("1", PNG), *GOOD]), 422, ["'1/0.png'", "file and a folder"]),
    ("not an archive", lambda: PNG, 422, ["not a zip or tar.gz"]),
    ("non-image member name", lambda: zip_of([*GOOD, ("2/notes.txt", b"hello")]), 422, ["2/notes.txt", "not a PNG or JPEG"]),
    ("non-image member bytes", lambda: zip_of([*GOOD, ("2/fake.png", b"hello, not a png")]), 422,
     ["'2/fake.png'", "not a PNG or JPEG"]),
    ("image over ATNL_MAX_PIXELS", lambda: zip_of([*GOOD, ("3/big.png", tiny_png(1, size=(120, 120)))]), 413,
     ["'3/big.png'", "ATNL_MAX_PIXELS"]),
    ("image under 8x8", lambda: zip_of([*GOOD, ("3/small.png", tiny_png(1, size=(6, 9)))]), 422,
     ["'3/small.png'", "at least 8x8"]),
    ("empty archive", lambda: zip_of([]), 422, ["no files"]),
    ("folders only", lambda: zip_of([("1/", b""), ("2/", b"")]), 422, ["no files"]),
    ("single label", lambda: zip_of(labelled(["5"], per_label=3)), 422, ["at least 3 labels", "(5)"]),
    ("labels.csv label missing from labels.txt", lambda: zip_of(csv_set("a.png,low\nb.png,mid\nc.png,high\n", "low\nmid\n")), 422,
     ["'high'", "labels.txt"]),
    ("labels.csv names an image twice", lambda: zip_of(csv_set("a.png,x\nb.png,y\nc.png,z\na.png,z\n", "x\ny\nz\n")), 422,
     ["'a.png'", "twice"]),
    ("words without labels.txt", lambda: zip_of(labelled(["low", "mid", "high"])), 422, ["not a number", "labels.txt"]),
]  # fmt: skip


def leftovers(settings: Settings) -> list[str]:
    root = settings.model_store / "datasets"
    return sorted(os.listdir(root)) if root.is_dir() else []


@pytest.mark.parametrize(("archive", "status", "words"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
async def test_a_hostile_archive_is_refused_naming_the_member_and_leaves_nothing(
    client, settings: Settings, archive: Callable[[], bytes], status: int, words: list[str]
) -> None:
    r = await client.post("/v1/datasets", files={"archive": ("upload.zip", archive(), "application/zip")})
    body = assert_problem(r, status, *words)
    assert body["field"] == "archive"
    assert leftovers(settings) == []
    assert (await client.get("/v1/datasets")).json() == {"datasets": []}


async def test_a_tar_pax_header_past_its_cap_is_refused_before_it_is_read(client, settings: Settings) -> None:
    info = tarfile.TarInfo("1/x.png")
    info.size, info.pax_headers = len(PNG), {"comment": secrets.token_hex(50_000)}  # 100 kB of text, hardly compressible
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(info, io.BytesIO(PNG))
    r = await client.post("/v1/datasets", files={"archive": ("pax.tar.gz", gzip.compress(raw.getvalue()), "application/gzip")})
    assert_problem(r, 413, "extended header")
    assert leftovers(settings) == []


# --- the extraction itself -----------------------------------------------------------------------------


def caps(**changes: int) -> ArchiveCaps:
    return replace(ArchiveCaps.from_settings(Settings(_env_file=None)), **changes)  # type: ignore[call-arg]


def test_member_names_are_normalised_or_refused() -> None:
    assert member_parts("./a//b/./c.png") == ("a", "b", "c.png")
    assert member_parts("digits/5/") == ("digits", "5")
    for bad in ("../x", "a/../../x", "/x", "C:x", "a\\b", "", "./", "a\x00b", "x" * 300):
        with pytest.raises(InvalidInput):
            member_parts(bad)


def test_nothing_is_written_through_a_link_planted_in_the_destination(tmp_path: Path) -> None:
    """Members never make links; were one there, the resolved-path check refuses a path leading
    out, and O_NOFOLLOW refuses to follow one even inside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    destination = Destination(dest)
    try:
        os.symlink(outside, dest / "5")
        with pytest.raises(InvalidInput, match="outside"):
            destination.write("5/a.png", ("5", "a.png"), iter([b"data"]))
        (dest / "6").mkdir()
        os.symlink(dest / "6", dest / "7")
        with pytest.raises(OSError):
            destination.write("7/a.png", ("7", "a.png"), iter([b"data"]))
        os.symlink(dest / "6" / "target.png", dest / "b.png")
        with pytest.raises(OSError):
            destination.write("b.png", ("b.png",), iter([b"data"]))
    finally:
        destination.close()
    assert list(outside.iterdir()) == [] and list((dest / "6").iterdir()) == []


def test_a_failed_extraction_removes_everything_it_wrote(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(patch_zip_headers(zip_of([*GOOD, ("3/liar.png", bytes(100_000))]), "3/liar.png", file_size=10))
    with open(archive, "rb") as f, pytest.raises(InvalidInput, match=r"3/liar\.png"):
        extract_archive(f, tmp_path / "dest", caps())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_a_good_archive_unpacks_and_a_destination_must_be_new(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz_of(GOOD))
    with open(archive, "rb") as f:
        assert extract_archive(f, tmp_path / "dest", caps()) == len(GOOD)
        assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*.png")) == sorted(
            name for name, _ in GOOD
        )
        with pytest.raises(FileExistsError):
            extract_archive(f, tmp_path / "dest", caps())


def test_an_archive_over_max_archive_bytes_is_refused_unread(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_of(GOOD))
    with open(archive, "rb") as f, pytest.raises(PayloadTooLarge, match="ATNL_MAX_ARCHIVE_BYTES"):
        extract_archive(f, tmp_path / "dest", caps(max_archive_bytes=100))
    assert not (tmp_path / "dest").exists()
