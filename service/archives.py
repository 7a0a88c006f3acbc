"""Safe unpacking of one uploaded archive (zip, or tar.gz) into a fresh directory.

An archive is hostile until proven otherwise. Its kind comes from its first bytes, never
its name. What it holds is checked from its headers before a member is written (names,
types, counts, sizes, compression ratios) and again on the bytes as they stream out,
since a header can lie. Refused, with the member named (field ``archive``):

- paths that leave the destination (``..``, absolute, drive letters, backslashes),
  control characters, overlong names, duplicates, a file that is also a folder;
- symlinks, hard links, devices, fifos, sparse files: anything but files and folders;
- archives inside the archive (by name or by their first bytes);
- encrypted zip members and compression methods other than store and deflate;
- more members, bytes or inflation than ATNL_MAX_ARCHIVE_MEMBERS, ATNL_MAX_MEMBER_BYTES,
  ATNL_MAX_ARCHIVE_UNPACKED_BYTES and ATNL_MAX_COMPRESSION_RATIO allow (413);
- truncated or corrupt archives, and members whose bytes differ from their header.

Files are created with O_EXCL | O_NOFOLLOW inside folders opened with O_NOFOLLOW, one
level at a time from the destination's descriptor, so nothing is written outside it; a
failed extraction removes the destination and all it wrote. The checks and the writing:
service.archive_members; the two formats: service.archive_formats.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO, Literal

from service.archive_formats import extract_tar_gz, extract_zip
from service.archive_members import ARCHIVE_FIELD, ArchiveCaps, Destination, Members
from service.errors import InvalidInput, PayloadTooLarge

Kind = Literal["zip", "tar.gz"]


def archive_kind(head: bytes) -> Kind | None:
    """zip or tar.gz from the first bytes of a file (a gzip stream is taken for a tar.gz), else None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    return None


def extract_archive(source: IO[bytes], dest: Path, caps: ArchiveCaps) -> int:
    """Unpack the zip or tar.gz ``source`` (a seekable binary file) into the new directory ``dest``;
    returns the files written. InvalidInput or PayloadTooLarge (field ``archive``) for what the
    module docstring lists; on any failure ``dest`` is removed with all it held."""
    size = source.seek(0, os.SEEK_END)
    if size > caps.max_archive_bytes:
        raise PayloadTooLarge(f"archive: {size} bytes, more than {caps.max_archive_bytes} (ATNL_MAX_ARCHIVE_BYTES)",
                              field=ARCHIVE_FIELD)  # fmt: skip
    source.seek(0)
    kind = archive_kind(source.read(4))
    source.seek(0)
    if kind is None:
        raise InvalidInput("archive: not a zip or tar.gz file (told by its first bytes, not its name)", field=ARCHIVE_FIELD)
    members = Members(caps)
    destination = Destination(dest)
    try:
        (extract_zip if kind == "zip" else extract_tar_gz)(source, size, destination, members)
        if members.files == 0:
            raise InvalidInput("archive: it holds no files", field=ARCHIVE_FIELD)
    except BaseException:
        destination.close()
        shutil.rmtree(dest, ignore_errors=True)
        raise
    destination.close()
    return members.files
