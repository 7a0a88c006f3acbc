"""Reading the two archive formats accepted, zip and tar.gz, member by member into a
``Destination`` under the checks of ``Members`` (service.archive_members).

zip: the central directory is walked first (its records counted without building them),
then every header is admitted before any member is written; only store and deflate, never
encrypted. tar.gz: streamed; each header is admitted as it comes, and the inflated stream
itself is counted (InflatedStream), since gzip compresses the whole tar, not its members.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from typing import IO

from service.archive_members import (
    ARCHIVE_FIELD,
    CHUNK_BYTES,
    MAX_NAME_CHARS,
    RATIO_FLOOR_BYTES,
    ArchiveCaps,
    Destination,
    Members,
    corrupt,
    read_chunks,
    refused,
    too_large,
)
from service.errors import InvalidInput, ServiceError

MAX_TAR_META_BYTES = 64 * 1024
"""Largest pax or GNU long-name header of a tar member (tarfile reads them into memory whole)."""
TAR_OVERHEAD_PER_MEMBER = 2048
"""Tar bytes beside a member's data (its header, a pax header, padding), allowed on top of
ATNL_MAX_ARCHIVE_UNPACKED_BYTES when counting the inflated stream."""


ZIP_END = struct.Struct("<4s4H2LH")
"""End of central directory record: signature, disk numbers, entry counts, directory size and offset, comment length."""
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_END = struct.Struct("<4sQ2H2L4Q")
ZIP_ENTRY = struct.Struct("<4s6H3L5H2L")
"""One central directory record, before its name, extra field and comment."""


def _zip_directory(fp: IO[bytes], size: int) -> tuple[int, int, int]:
    """(directory start, directory size, declared entries) from the end record (ZIP64 where it says so)."""
    tail_start = max(0, size - ZIP_END.size - 0xFFFF)
    fp.seek(tail_start)
    tail = fp.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < ZIP_END.size:
        raise InvalidInput("archive: truncated or corrupt zip (no end of central directory)", field=ARCHIVE_FIELD)
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = ZIP_END.unpack_from(tail, at)
    end_at = tail_start + at
    if disk or cd_disk:
        raise InvalidInput("archive: multi-part zip archives are not accepted", field=ARCHIVE_FIELD)
    if 0xFFFF in (entries,) or 0xFFFFFFFF in (cd_size, cd_offset):
        locator_at = end_at - ZIP64_LOCATOR.size
        fp.seek(max(locator_at, 0))
        locator = fp.read(ZIP64_LOCATOR.size)
        if locator_at < 0 or len(locator) < ZIP64_LOCATOR.size or locator[:4] != b"PK\x06\x07":
            raise InvalidInput("archive: truncated or corrupt zip (bad ZIP64 locator)", field=ARCHIVE_FIELD)
        end_at = ZIP64_LOCATOR.unpack(locator)[2]
        fp.seek(end_at)
        record = fp.read(ZIP64_END.size)
        if len(record) < ZIP64_END.size or record[:4] != b"PK\x06\x06":
            raise InvalidInput("archive: truncated or corrupt zip (bad ZIP64 end record)", field=ARCHIVE_FIELD)
        _, _, _, _, _, _, _, entries, cd_size, cd_offset = ZIP64_END.unpack(record)
    if cd_offset + cd_size != end_at:
        raise InvalidInput("archive: corrupt zip (data before its first member, or a misplaced directory)", field=ARCHIVE_FIELD)
    return cd_offset, cd_size, entries


def _check_zip_directory(fp: IO[bytes], size: int, caps: ArchiveCaps) -> None:
    """Count the central directory's records without building them (zipfile would hold every one in
    memory first): more than ATNL_MAX_ARCHIVE_MEMBERS is refused before zipfile reads it."""
    start, length, declared = _zip_directory(fp, size)
    too_many = too_large(None, f"more than {caps.max_members} members (ATNL_MAX_ARCHIVE_MEMBERS)")
    if declared > caps.max_members:
        raise too_many
    fp.seek(start)
    walked = count = 0
    while walked < length:
        record = fp.read(ZIP_ENTRY.size)
        if len(record) < ZIP_ENTRY.size or record[:4] != b"PK\x01\x02":
            raise InvalidInput("archive: truncated or corrupt zip (bad central directory)", field=ARCHIVE_FIELD)
        name_len, extra_len, comment_len = ZIP_ENTRY.unpack(record)[10:13]
        count += 1
        if count > caps.max_members:
            raise too_many
        if name_len > MAX_NAME_CHARS * 4:
            raise InvalidInput(f"archive: a member name of {name_len} bytes (at most {MAX_NAME_CHARS} characters)",
                               field=ARCHIVE_FIELD)  # fmt: skip
        fp.seek(name_len + extra_len + comment_len, os.SEEK_CUR)
        walked += ZIP_ENTRY.size + name_len + extra_len + comment_len
    fp.seek(0)


def _zip_is_dir(info: zipfile.ZipInfo) -> bool:
    """Whether a zip member is a folder; InvalidInput for links, devices and fifos (Unix mode bits)."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise refused(info.filename, "is a symbolic link (links are not accepted)")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise refused(info.filename, "is not a regular file or folder")
    return info.is_dir() or kind == stat.S_IFDIR


def _admit_zip_member(info: zipfile.ZipInfo, members: Members) -> tuple[bool, tuple[str, ...]]:
    name = info.filename
    if info.flag_bits & 0x1:
        raise refused(name, "is encrypted (send an archive without a password)")
    is_dir = _zip_is_dir(info)
    if is_dir and info.file_size:
        raise refused(name, "is a folder that holds data")
    if not is_dir and info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise refused(name, f"compression method {info.compress_type} is not accepted (use deflate or store)")
    return is_dir, members.admit(name, is_dir, info.file_size, info.compress_size)


def extract_zip(fp: IO[bytes], size: int, destination: Destination, members: Members) -> None:
    _check_zip_directory(fp, size, members.caps)
    try:
        archive = zipfile.ZipFile(fp)
        infos = archive.infolist()
    except Exception as e:  # BadZipFile, ValueError, struct.error, ... on a broken directory
        raise corrupt(None, e) from e
    with archive:
        plan = [(info, *_admit_zip_member(info, members)) for info in infos]  # every header before any write
        for info, is_dir, parts in plan:
            if is_dir:
                destination.mkdir(parts)
                continue
            try:
                opened = archive.open(info)
            except Exception as e:  # a local header that disagrees with the directory, ...
                raise corrupt(info.filename, e) from e
            with opened:
                chunks = read_chunks(opened.read, info.filename)
                destination.write(info.filename, parts, members.stream(info.filename, chunks, info.file_size, info.compress_size))


# --- tar.gz -------------------------------------------------------------------------------------------


class BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose pax or GNU long-name extension is refused past MAX_TAR_META_BYTES, before
    tarfile reads it into memory."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        meta = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in meta and self.size > MAX_TAR_META_BYTES:
            raise too_large(None, f"a tar extended header of {self.size} bytes (at most {MAX_TAR_META_BYTES})")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]


class InflatedStream(io.RawIOBase):
    """The inflated bytes of a gzip file, counted as tarfile reads them: past the unpacked budget
    (members plus TAR_OVERHEAD_PER_MEMBER each) or ATNL_MAX_COMPRESSION_RATIO, refused."""

    def __init__(self, raw: IO[bytes], caps: ArchiveCaps) -> None:
        super().__init__()
        self.raw, self.caps = raw, caps
        self.gzip = gzip.GzipFile(fileobj=raw, mode="rb")
        self.limit = caps.max_unpacked_bytes + (caps.max_members + 1) * TAR_OVERHEAD_PER_MEMBER
        self.out = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = CHUNK_BYTES if size is None or size < 0 else min(size, CHUNK_BYTES)
        data = self.gzip.read(size)
        self.out += len(data)
        if self.out > self.limit:
            raise too_large(None, f"it inflates to more than {self.limit} bytes (ATNL_MAX_ARCHIVE_UNPACKED_BYTES)")
        ratio = self.caps.max_compression_ratio
        if self.out >= RATIO_FLOOR_BYTES and self.out > ratio * max(self.raw.tell(), 1):
            raise too_large(None, f"it inflates more than {ratio:g}:1 (ATNL_MAX_COMPRESSION_RATIO)")
        return data


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of a streamed tar, a broken header or stream refused as corrupt."""
    while True:
        try:
            info = archive.next()
        except ServiceError:
            raise
        except Exception as e:  # tarfile.ReadError, EOFError, zlib.error, BadGzipFile, ...
            raise corrupt(None, e) from e
        if info is None:
            return
        yield info


def _admit_tar_member(info: tarfile.TarInfo, members: Members) -> tuple[str, ...]:
    if info.issym() or info.islnk():
        raise refused(info.name, "is a link (links are not accepted)")
    if info.issparse():
        raise refused(info.name, "is a sparse file (not accepted)")
    if not (info.isreg() or info.isdir()):
        raise refused(info.name, "is not a regular file or folder")
    return members.admit(info.name, info.isdir(), 0 if info.isdir() else info.size)


def extract_tar_gz(fp: IO[bytes], size: int, destination: Destination, members: Members) -> None:
    stream = InflatedStream(fp, members.caps)
    try:
        archive = tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo)
    except ServiceError:
        raise
    except Exception as e:
        raise corrupt(None, e) from e
    with archive:
        for info in _tar_members(archive):
            parts = _admit_tar_member(info, members)
            if info.isdir():
                destination.mkdir(parts)
                continue
            member = archive.extractfile(info)
            assert member is not None  # a regular file
            destination.write(info.name, parts, members.stream(info.name, read_chunks(member.read, info.name), info.size))
