"""A labelled image folder on disk, and the one rule that orders its labels.

Two layouts are read (docs/API.md §7, "Your own data"):

    ROOT/<label>/<image>.png ...            one sub-folder per label
    ROOT/labels.csv + images anywhere       rows ``file,label`` (a ``file,label`` header is optional)

and in either, an optional ``ROOT/labels.txt`` gives the label order, one name a line.
A root holding nothing but one folder (a zipped folder) is read from inside that folder.

Label order is never guessed: ``labels.txt`` wins; without it, names that all parse as
numbers sort numerically (``5, 10, 20, 40``, not ``10, 20, 40, 5``); anything else is
refused, asking for ``labels.txt``. Nothing here decodes an image.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS_CSV = "labels.csv"
LABELS_TXT = "labels.txt"
MIN_LABELS = 3
"""Fewest labels a data set may have: an order needs a middle."""
IGNORED_NAMES = ("__MACOSX", "Thumbs.db", "desktop.ini")
"""Entries archivers and file browsers add beside the data (with every name starting with a dot)."""


class LayoutError(InputError):
    """A labelled folder that cannot be read as a data set; the message names the file at fault."""


@dataclass(frozen=True)
class Layout:
    root: Path
    files: list[Path]
    """Every image, in label order, then by name."""
    labels: list[int]
    """Label index of each file, in [0, K)."""
    label_names: list[str]
    """K names in label order."""

    @property
    def counts(self) -> dict[str, int]:
        """Images of each label, in label order."""
        return {name: self.labels.count(k) for k, name in enumerate(self.label_names)}


def as_number(name: str) -> float | None:
    try:
        value = float(name)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def label_order(names: Iterable[str], order: list[str] | None = None) -> list[str]:
    """The label order of ``names`` (the labels that have images): ``order`` (labels.txt) when
    given, which must name each of them once and no other; else numeric when every name is a
    number; else LayoutError. At least MIN_LABELS labels."""
    present = sorted(set(names))
    if len(present) < MIN_LABELS:
        found = ", ".join(present) or "none"
        raise LayoutError(f"a data set needs at least {MIN_LABELS} labels with images; found {len(present)} ({found})")
    if order is not None:
        seen: set[str] = set()
        for name in order:
            if name in seen:
                raise LayoutError(f"{LABELS_TXT} names label {name!r} twice")
            seen.add(name)
        missing = [name for name in present if name not in seen]
        if missing:
            raise LayoutError(f"label {missing[0]!r} has images but is not in {LABELS_TXT}")
        empty = [name for name in order if name not in set(present)]
        if empty:
            raise LayoutError(f"label {empty[0]!r} of {LABELS_TXT} has no images")
        return list(order)
    numbers = {name: as_number(name) for name in present}
    if all(v is not None for v in numbers.values()):
        by_value = sorted(present, key=lambda name: (numbers[name], name))
        if len({numbers[name] for name in present}) < len(present):
            raise LayoutError(f"labels {by_value} name the same number twice; add {LABELS_TXT} to give their order")
        return by_value
    words = [name for name, v in numbers.items() if v is None]
    raise LayoutError(
        f"the label order cannot be known: {words[0]!r} is not a number; add {LABELS_TXT} "
        f"with one label a line, in order (first to last)"
    )


def ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def data_root(root: Path) -> Path:
    """``root``, or the one folder it holds when it holds nothing else (a zipped folder)."""
    entries = [p for p in root.iterdir() if not ignored(p)]
    if len(entries) == 1 and entries[0].is_dir() and not (root / LABELS_CSV).exists():
        inner = entries[0]
        if (inner / LABELS_CSV).is_file() or (inner / LABELS_TXT).is_file() or any(p.is_dir() for p in inner.iterdir()):
            return inner
    return root


def read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LayoutError(f"{path.name} is not UTF-8 text") from e


def read_order(root: Path) -> list[str] | None:
    """The names of ``labels.txt``, blank lines and surrounding spaces dropped; None without one."""
    path = root / LABELS_TXT
    if not path.is_file():
        return None
    return [line.strip() for line in read_text_file(path).splitlines() if line.strip()]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _from_csv(root: Path) -> list[tuple[Path, str]]:
    rows = list(csv.reader(io.StringIO(read_text_file(root / LABELS_CSV))))
    if rows and [c.strip().lower() for c in rows[0]] == ["file", "label"]:
        rows = rows[1:]
    pairs = []
    for line, row in enumerate(rows, start=1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2:
            raise LayoutError(f"{LABELS_CSV} line {line}: expected two columns file,label; got {len(row)}")
        name, label = row[0].strip(), row[1].strip()
        path = root / name
        if not name or not label or Path(name).is_absolute() or ".." in Path(name).parts:
            raise LayoutError(f"{LABELS_CSV} line {line}: {name!r} is not a file inside the data set")
        if not is_image(path):
            raise LayoutError(f"{LABELS_CSV} line {line}: {name!r} is not a PNG or JPEG file name")
        if not path.is_file():
            raise LayoutError(f"{LABELS_CSV} line {line}: {name!r} is not in the data set")
        pairs.append((path, label))
    return pairs


def _from_folders(root: Path) -> list[tuple[Path, str]]:
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not ignored(p)):
        for path in sorted(p for p in folder.iterdir() if not ignored(p)):
            if path.is_dir():
                raise LayoutError(f"{rel(path, root)}: label folders hold images only, not folders")
            if not is_image(path):
                raise LayoutError(f"{rel(path, root)}: not a PNG or JPEG file name")
            pairs.append((path, folder.name))
    return pairs


def labelled_files(root: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """The data root under ``root`` (``data_root``) and its (image, label name) pairs, in either
    layout, unordered; LayoutError when there are none."""
    if not root.is_dir():
        raise LayoutError(f"{root} is not a directory")
    root = data_root(root)
    pairs = _from_csv(root) if (root / LABELS_CSV).is_file() else _from_folders(root)
    if not pairs:
        raise LayoutError(f"no images found: expected one folder per label, or images plus {LABELS_CSV}")
    return root, pairs


def read_layout(root: Path) -> Layout:
    """The labelled images under ``root`` (either layout), labels ordered by ``label_order``."""
    root, pairs = labelled_files(root)
    names = label_order((label for _, label in pairs), read_order(root))
    index = {name: k for k, name in enumerate(names)}
    pairs.sort(key=lambda pair: (index[pair[1]], rel(pair[0], root)))
    return Layout(root, [p for p, _ in pairs], [index[label] for _, label in pairs], names)
