"""Uploaded data sets: a folder of the model store (a directory or S3), one canonical folder each.

    <store>/datasets/<id>/images/<label index>/<n>.png   every image, re-encoded (L or RGB)
    <store>/datasets/<id>/labels.txt                     label names in order, one a line
    <store>/datasets/<id>/labels.csv                     file,label of every image
    <store>/datasets/<id>/dataset.json                   what GET /v1/datasets/{id} answers

An upload is unpacked (service.archives) into a temporary folder of the store whose name
starts with a dot (never listed), read as a labelled folder (models.layout: the one
label-order rule), every image decoded within the service's caps and written again as
PNG (the user's bytes are never kept), then renamed to its id in one step. labels.txt
and labels.csv make the directory a ``models.layout`` folder again, so the worker
reads it as ``upload:ID`` with the same rule.

On an S3 store the folder is built in ATNL_MODEL_CACHE and uploaded with dataset.json last (a
prefix without it is never listed); a worker or API replica that needs the images downloads
the folder once into its own cache (``local_dir``). Deleting removes dataset.json first, so the
data set leaves every listing in one step.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from models.layout import LABELS_CSV, LABELS_TXT, Layout, LayoutError, read_layout
from models.networks import MIN_SIDE
from service.archive_members import ARCHIVE_FIELD, ArchiveCaps, refused
from service.archives import extract_archive
from service.dataset_files import canonical_image, check_labels, dataset_name, decode_member, new_dataset_id
from service.datasets import DATASET_ID, UPLOAD_KIND
from service.errors import DatasetNotFound, InvalidInput, redact_paths
from service.imaging import ImageCaps
from service.objects import Objects
from service.store import DATASETS_DIR, open_objects

RECORD = "dataset.json"
IMAGES = "images"
PARTIAL_PREFIXES = (".upload-", ".deleting-")
"""Temporary folders: an upload being built, a data set being removed."""
PARTIAL_MAX_AGE_SECONDS = 3600.0
"""A temporary folder this old was left by a process killed inside an upload or delete."""


class DatasetStore:
    def __init__(self, location: str | Path | Objects, cache: Path | None = None) -> None:
        """``location``: the model store (a directory, ``s3://BUCKET/PREFIX`` or an ``Objects``);
        ``cache``: where an S3 store's data sets are built and downloaded (ATNL_MODEL_CACHE)."""
        self.objects = location if isinstance(location, Objects) else open_objects(str(location))
        self.cache = Path(cache) if cache is not None else Path("var/cache")
        local = self.objects.local_root()
        self.root: Path | None = local / DATASETS_DIR if local is not None else None
        """The data sets' folder of a directory store (None on S3)."""

    def ensure(self) -> DatasetStore:
        self.objects.ensure()
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        return self

    @staticmethod
    def checked(dataset_id: str) -> str:
        """``dataset_id``; InvalidInput for an id that is not one this store makes."""
        if not DATASET_ID.match(dataset_id):
            raise InvalidInput(f"invalid data set id {dataset_id[:64]!r}", field="dataset_id")
        return dataset_id

    @staticmethod
    def _key(dataset_id: str, name: str = "") -> str:
        return f"{DATASETS_DIR}/{dataset_id}" + (f"/{name}" if name else "")

    def exists(self, dataset_id: str) -> bool:
        return bool(DATASET_ID.match(dataset_id)) and self.objects.exists(self._key(dataset_id, RECORD))

    def _records(self) -> list[dict[str, Any]]:
        """dataset.json of every complete data set, oldest first."""
        found = []
        for dataset_id in self.objects.children(DATASETS_DIR):
            if DATASET_ID.match(dataset_id):
                with contextlib.suppress(DatasetNotFound):  # incomplete, or deleted meanwhile
                    found.append(self.describe(dataset_id))
        return sorted(found, key=lambda r: (str(r.get("created_at", "")), str(r.get("id", ""))))

    def ids(self) -> list[str]:
        """Ids of every complete data set, oldest first."""
        return [str(r["id"]) for r in self._records()]

    def describe(self, dataset_id: str) -> dict[str, Any]:
        """dataset.json of ``dataset_id``; DatasetNotFound when there is none."""
        data = self.objects.read(self._key(self.checked(dataset_id), RECORD))
        if data is None:
            raise DatasetNotFound(f"no data set {dataset_id!r} (GET /v1/datasets lists them)")
        try:
            record = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            record = None
        if not isinstance(record, dict):
            raise DatasetNotFound(f"data set {dataset_id!r} has no readable record")
        return {**record, "id": dataset_id}

    def listing(self) -> list[dict[str, Any]]:
        """``describe`` of every data set, oldest first (reads every dataset.json: call it off the event loop)."""
        return self._records()

    def delete(self, dataset_id: str) -> None:
        """Remove ``dataset_id`` so that a reader sees all of it or none: renamed away in one step
        in a directory store, its dataset.json deleted first on S3; then the rest."""
        self.checked(dataset_id)
        if self.root is None:
            if not self.exists(dataset_id):
                raise DatasetNotFound(f"no data set {dataset_id!r} (GET /v1/datasets lists them)")
            self.objects.delete([self._key(dataset_id, RECORD)])
            self.objects.delete(k.key for k in self.objects.keys(self._key(dataset_id)))
            return
        gone = self.root / f"{PARTIAL_PREFIXES[1]}{dataset_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.root / dataset_id, gone)
        except FileNotFoundError:
            raise DatasetNotFound(f"no data set {dataset_id!r} (GET /v1/datasets lists them)") from None
        shutil.rmtree(gone, ignore_errors=True)

    def remove_partials(self, max_age_seconds: float = PARTIAL_MAX_AGE_SECONDS) -> list[str]:
        """Delete what a process killed inside an upload or delete left, once older than
        ``max_age_seconds``: temporary folders of a directory store, prefixes without
        dataset.json on S3; their names."""
        if self.root is None:
            by_id: dict[str, list[Any]] = {}
            for listed in self.objects.keys(DATASETS_DIR):
                by_id.setdefault(listed.key.split("/")[1], []).append(listed)
            stale = [i for i, keys in by_id.items() if all(k.key.split("/")[-1] != RECORD for k in keys)
                     and min(k.age_seconds for k in keys) > max_age_seconds]  # fmt: skip
            for dataset_id in stale:
                self.objects.delete(k.key for k in by_id[dataset_id])
            return stale
        if not self.root.is_dir():
            return []
        removed = []
        now = time.time()
        for p in self.root.iterdir():
            if p.name.startswith(PARTIAL_PREFIXES) and p.is_dir() and now - p.stat().st_mtime > max_age_seconds:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def local_dir(self, dataset_id: str) -> Path:
        """A local folder with the data set's files (what ``upload:ID`` reads): its own folder in a
        directory store; on S3 this process's copy in the cache, downloaded once."""
        if self.root is not None:
            if not self.exists(dataset_id):
                raise DatasetNotFound(f"no data set {dataset_id!r} (GET /v1/datasets lists them)")
            return self.root / dataset_id
        target = self.cache / DATASETS_DIR / self.checked(dataset_id)
        if (target / RECORD).is_file():
            return target
        if not self.exists(dataset_id):
            raise DatasetNotFound(f"no data set {dataset_id!r} (GET /v1/datasets lists them)")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
            self.objects.download_tree(self._key(dataset_id), Path(tmp) / "d", last=RECORD)
            with contextlib.suppress(OSError):  # made meanwhile by another thread of this process
                (Path(tmp) / "d").rename(target)
        return target

    def upload_root(self, spec: str | None) -> Path:
        """The folder ``models.data`` reads ``upload:ID`` data sets from, with ``spec``'s data set in
        it when it is one (downloaded first on S3)."""
        kind, _, arg = (spec or "").partition(":")
        if kind == UPLOAD_KIND and self.root is None:
            return self.local_dir(arg).parent
        return self.root if self.root is not None else self.cache / DATASETS_DIR

    def create(
        self, archive: IO[bytes] | str | Path, caps: ArchiveCaps, image_caps: ImageCaps, filename: str | None = None
    ) -> dict[str, Any]:
        """Store the labelled images of a zip or tar.gz ``archive`` (an open binary file or a path) as a new
        data set; its record (dataset.json). ``filename`` names it (default: the path's name).
        InvalidInput, BadImage or PayloadTooLarge (field ``archive``) for an archive refused; nothing
        is left behind then. Slow (decodes every image): call it off the event loop."""
        self.ensure().remove_partials()
        building = self.root if self.root is not None else self.cache / "staging"
        building.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIXES[0], dir=building))
        try:
            if isinstance(archive, str | Path):
                with open(archive, "rb") as f:
                    extract_archive(f, work / "unpacked", caps)
                filename = filename or Path(archive).name
            else:
                extract_archive(archive, work / "unpacked", caps)
            try:
                layout = read_layout(work / "unpacked")
            except LayoutError as e:
                raise InvalidInput(f"archive: {redact_paths(str(e))}", field=ARCHIVE_FIELD) from e
            built = work / "dataset"
            record = self._write(layout, work / "unpacked", built, image_caps, dataset_name(filename))
            if self.root is not None:
                os.rename(built, self.root / record["id"])
            else:
                try:
                    self.objects.upload_tree(built, self._key(record["id"]), last=RECORD)
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.objects.delete(k.key for k in self.objects.keys(self._key(record["id"])))
                    raise
            return record
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _write(self, layout: Layout, unpacked: Path, out: Path, caps: ImageCaps, name: str) -> dict[str, Any]:
        """The canonical directory of ``layout`` in ``out``; its record, written last."""
        check_labels(layout.label_names)
        members = [path.relative_to(unpacked).as_posix() for path in layout.files]
        if len(set(members)) < len(members):
            twice = next(m for k, m in enumerate(members) if m in members[:k])
            raise refused(twice, f"{LABELS_CSV} names this image twice")
        counters = [0] * len(layout.label_names)
        sizes, colour, stored, rows = [], False, 0, []
        for path, member, label in zip(layout.files, members, layout.labels, strict=True):
            img, in_colour = canonical_image(decode_member(path, member, caps))
            if min(img.size) < MIN_SIDE:
                raise refused(
                    member, f"the image is {img.width}x{img.height}; a model's images are at least {MIN_SIDE}x{MIN_SIDE}"
                )
            colour |= in_colour
            sizes.append((img.height, img.width))
            rel = f"{IMAGES}/{label}/{counters[label]}.png"
            counters[label] += 1
            (out / IMAGES / str(label)).mkdir(parents=True, exist_ok=True)
            img.save(out / rel, format="PNG")
            stored += (out / rel).stat().st_size
            rows.append((rel, layout.label_names[label]))
        stored += self._write_labels(out, layout.label_names, rows)
        heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
        record = {
            "id": self._free_id(),
            "name": name,
            "labels": layout.label_names,
            "counts": dict(zip(layout.label_names, counters, strict=True)),
            "image_shape": [3 if colour else 1, min(heights), min(widths)],
            "size_range": {"min": [min(heights), min(widths)], "max": [max(heights), max(widths)]},
            "images": len(rows),
            "created_at": datetime.now(UTC).isoformat(),
            "bytes": stored,
        }
        (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return record

    @staticmethod
    def _write_labels(out: Path, names: list[str], rows: list[tuple[str, str]]) -> int:
        """labels.txt and labels.csv (``models.layout`` reads the directory back with them); bytes written."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "label"])
        writer.writerows(rows)
        (out / LABELS_CSV).write_text(buffer.getvalue(), encoding="utf-8")
        (out / LABELS_TXT).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        return (out / LABELS_CSV).stat().st_size + (out / LABELS_TXT).stat().st_size

    def _free_id(self) -> str:
        while True:
            dataset_id = new_dataset_id()
            if not self.objects.keys(self._key(dataset_id)):
                return dataset_id


def open_datasets(settings: Any) -> DatasetStore:
    """The data sets of the model store ``settings`` name (ATNL_MODEL_STORE, ATNL_MODEL_CACHE)."""
    return DatasetStore(settings.model_store, settings.model_cache)
