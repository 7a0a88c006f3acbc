"""The members of an uploaded archive: what each may be called and cost, and where it is written.

``Members`` admits each member from its header (name, kind, size, compression ratio, count
and total) and then counts its bytes again as they stream out, since a header can lie.
``Destination`` writes them: every file is created with O_EXCL | O_NOFOLLOW inside folders
opened with O_NOFOLLOW, one level at a time from the destination's descriptor, so nothing
lands outside it. The archive formats (service.archive_formats) feed both; the policy as a
whole is service.archives'.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from service.errors import InvalidInput, PayloadTooLarge, ServiceError
from service.settings import Settings

ARCHIVE_FIELD = "archive"
"""The multipart field of POST /v1/datasets, named by every refusal."""
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
"""Member names refused as archives inside the archive."""
NESTED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")
"""First bytes of zip, gzip, xz, 7z and rar data: members that start so are refused, whatever their name."""
BZIP2_MAGIC = re.compile(rb"^BZh[1-9]1AY&SY")
TAR_MAGIC = (257, b"ustar")
"""Where a tar member's header says it is one (offset, bytes)."""
SNIFF_BYTES = 512
"""Bytes of a member looked at for the magic above."""
CHUNK_BYTES = 1 << 16
"""Bytes read and written at a time while streaming a member out."""
MAX_NAME_CHARS = 1024
MAX_PART_BYTES = 255
"""Longest folder or file name (the file system's limit)."""
MAX_DEPTH = 32
RATIO_FLOOR_BYTES = 64 * 1024
"""Members (or, for a tar.gz, streams) unpacking to less than this are not held to ATNL_MAX_COMPRESSION_RATIO:
a short text file of blank lines inflates oddly and costs nothing."""
DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveCaps:
    """What one uploaded archive may cost (see service.settings)."""

    max_archive_bytes: int
    max_members: int
    max_unpacked_bytes: int
    max_member_bytes: int
    max_compression_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveCaps:
        return cls(
            settings.max_archive_bytes,
            settings.max_archive_members,
            settings.max_archive_unpacked_bytes,
            settings.max_member_bytes,
            settings.max_compression_ratio,
        )


def shown(name: str) -> str:
    """A member name as a refusal quotes it (repr, shortened)."""
    return repr(name if len(name) <= 120 else name[:117] + "...")


def refused(name: str, why: str) -> InvalidInput:
    return InvalidInput(f"archive member {shown(name)}: {why}", field=ARCHIVE_FIELD)


def too_large(name: str | None, why: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"archive member {shown(name)}: {why}" if name else f"archive: {why}", field=ARCHIVE_FIELD)


def corrupt(name: str | None, e: BaseException) -> InvalidInput:
    why = f"truncated or corrupt ({type(e).__name__}: {str(e)[:120]})"
    return refused(name, why) if name else InvalidInput(f"archive: {why}", field=ARCHIVE_FIELD)


def member_parts(name: str) -> tuple[str, ...]:
    """The path segments of member ``name`` below the destination; InvalidInput for a name that
    could leave it, or that no file system takes."""
    if "\\" in name:
        raise refused(name, "backslash in the path (archives separate folders with '/')")
    if not name.isprintable():
        raise refused(name, "control characters in the name")
    if name.startswith("/") or DRIVE.match(name):
        raise refused(name, "absolute path (members must be relative)")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise refused(name, "'..' in the path")
    if not parts:
        raise refused(name, "empty name")
    try:
        too_long = len(name) > MAX_NAME_CHARS or len(parts) > MAX_DEPTH or any(len(p.encode()) > MAX_PART_BYTES for p in parts)
    except UnicodeEncodeError:
        raise refused(name, "the name is not UTF-8") from None
    if too_long:
        raise refused(name, f"path too long (at most {MAX_NAME_CHARS} characters, {MAX_DEPTH} folders deep)")
    return parts


class Members:
    """The members admitted so far: counts, names and sizes against the caps, from headers and from bytes."""

    def __init__(self, caps: ArchiveCaps) -> None:
        self.caps = caps
        self.count = self.declared = self.written = self.files = 0
        self._seen: set[str] = set()
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    def admit(self, name: str, is_dir: bool, size: int, compressed: int | None = None) -> tuple[str, ...]:
        """Check one member's header (``size`` unpacked, ``compressed`` for a zip); its path segments."""
        caps = self.caps
        self.count += 1
        if self.count > caps.max_members:
            raise too_large(None, f"more than {caps.max_members} members (ATNL_MAX_ARCHIVE_MEMBERS)")
        parts = member_parts(name)
        key = "/".join(parts)
        if key in self._seen:
            raise refused(name, "appears twice in the archive")
        self._seen.add(key)
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts))]
        if key in (self._dirs if not is_dir else self._files) or any(p in self._files for p in prefixes):
            raise refused(name, "is both a file and a folder")
        self._dirs.update(prefixes)
        if is_dir:
            self._dirs.add(key)
            return parts
        self._files.add(key)
        if parts[-1].lower().endswith(ARCHIVE_SUFFIXES):
            raise refused(name, "archives inside the archive are not accepted")
        self.declared += size
        self._check_size(name, size, compressed, "declares")
        if self.declared > caps.max_unpacked_bytes:
            raise too_large(name, f"the members declare more than {caps.max_unpacked_bytes} bytes in all "
                            "(ATNL_MAX_ARCHIVE_UNPACKED_BYTES)")  # fmt: skip
        return parts

    def _check_size(self, name: str, size: int, compressed: int | None, verb: str) -> None:
        caps = self.caps
        if size > caps.max_member_bytes:
            raise too_large(name, f"{verb} more than {caps.max_member_bytes} bytes (ATNL_MAX_MEMBER_BYTES)")
        if compressed is not None and size >= RATIO_FLOOR_BYTES and size > caps.max_compression_ratio * max(compressed, 1):
            raise too_large(
                name, f"{verb} {size} bytes from {compressed} compressed: more than "
                f"{caps.max_compression_ratio:g}:1 (ATNL_MAX_COMPRESSION_RATIO)"
            )  # fmt: skip

    def stream(self, name: str, chunks: Iterator[bytes], size: int, compressed: int | None = None) -> Iterator[bytes]:
        """``chunks`` of one member, counted against its header and the caps as they pass; its
        first bytes must not be another archive."""
        out = 0
        head = b""
        for chunk in chunks:
            out += len(chunk)
            self.written += len(chunk)
            if out > size:
                raise refused(name, f"holds more bytes than its header declares ({size})")
            self._check_size(name, out, compressed, "unpacks to")
            if self.written > self.caps.max_unpacked_bytes:
                raise too_large(name, f"the archive unpacks to more than {self.caps.max_unpacked_bytes} bytes "
                                "(ATNL_MAX_ARCHIVE_UNPACKED_BYTES)")  # fmt: skip
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    self._sniff(name, head)
            yield chunk
        if len(head) < SNIFF_BYTES:
            self._sniff(name, head)
        if out != size:
            raise refused(name, f"holds {out} bytes, its header declares {size}")
        self.files += 1

    @staticmethod
    def _sniff(name: str, head: bytes) -> None:
        offset, magic = TAR_MAGIC
        if head.startswith(NESTED_MAGIC) or BZIP2_MAGIC.match(head) or head[offset : offset + len(magic)] == magic:
            raise refused(name, "is an archive (archives inside the archive are not accepted)")


class Destination:
    """A fresh directory that members are written into, never outside it."""

    def __init__(self, root: Path) -> None:
        os.mkdir(root, 0o755)  # FileExistsError: the destination must be new
        self.root = root
        self.real = os.path.realpath(root)
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def _folder(self, parts: tuple[str, ...]) -> int:
        """A descriptor of folder ``parts`` (made where missing), opened one level at a time without following links."""
        fd = os.dup(self.fd)
        try:
            for part in parts:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def mkdir(self, parts: tuple[str, ...]) -> None:
        os.close(self._folder(parts))

    def write(self, name: str, parts: tuple[str, ...], chunks: Iterator[bytes]) -> None:
        target = os.path.realpath(os.path.join(self.real, *parts))
        if os.path.commonpath([target, self.real]) != self.real:  # cannot happen after member_parts; checked anyway
            raise refused(name, "resolves outside the archive")
        folder = self._folder(parts[:-1])
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
        finally:
            os.close(folder)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)


def read_chunks(read: Callable[[int], bytes], name: str) -> Iterator[bytes]:
    """``read(CHUNK_BYTES)`` until it returns nothing; a decoding error names ``name`` as corrupt."""
    while True:
        try:
            chunk = read(CHUNK_BYTES)
        except ServiceError:
            raise
        except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, tarfile.ReadError, ...
            raise corrupt(name, e) from e
        if not chunk:
            return
        yield chunk
