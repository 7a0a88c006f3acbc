"""Which data sets a training request over HTTP may name (the CLI is not limited).

Built-in data sets are always open. ``upload:ID`` is open when the model store holds the
uploaded data set ID (POST /v1/datasets, service.dataset_store). ``mnist-idx:DIR`` and
``folder:DIR`` are open only when DIR, with every symlink resolved, lies inside one of
ATNL_DATA_ROOTS; otherwise a client could make the worker read any directory the worker
can. Refusals never echo a server path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from service.errors import InvalidInput
from service.store import DATASETS_DIR

BUILT_IN = ("mnist-5k", "pose-digits", "pose-photos", "digits-8x8")
"""Data sets shipped with the package (models.data), open to every training request."""
DIRECTORY_KINDS = ("mnist-idx", "folder")
"""Data set kinds that read a directory: allowed under ATNL_DATA_ROOTS only."""
UPLOAD_KIND = "upload"
"""``upload:ID``: a data set uploaded with POST /v1/datasets, kept in the model store."""
DATASET_ID = re.compile(r"^ds-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
"""Ids of uploaded data sets (``ds-<UTC time>-<random>``): plain directory names, no path tricks."""


def upload_root(model_store: Path) -> Path:
    """Where the uploaded data sets of ``model_store`` live (the API writes them, workers read them)."""
    return model_store / DATASETS_DIR


def is_upload(spec: str) -> bool:
    return spec.startswith(UPLOAD_KIND + ":")


def allowed_dataset(spec: str, roots: Sequence[Path], upload_exists: Callable[[str], bool] = lambda _: False) -> str:
    """``spec`` as the worker should read it (directory resolved), or InvalidInput naming ``dataset``.

    ``upload_exists(ID)`` says whether the uploaded data set ID is in the store."""
    if spec in BUILT_IN:
        return spec
    kind, sep, arg = spec.partition(":")
    if kind == UPLOAD_KIND and sep:
        if not DATASET_ID.match(arg) or not upload_exists(arg):
            raise InvalidInput(f"dataset: no uploaded data set {arg[:64]!r} (GET /v1/datasets lists them)", field="dataset")
        return spec
    if not sep or kind not in DIRECTORY_KINDS or not arg:
        raise InvalidInput(
            f"dataset must be one of {list(BUILT_IN)}, {UPLOAD_KIND}:ID (an uploaded data set) or "
            f"{' / '.join(k + ':DIR' for k in DIRECTORY_KINDS)}",
            field="dataset",
        )
    if not roots:
        raise InvalidInput(
            f"dataset: {kind}:DIR data sets are not open over HTTP on this server (no ATNL_DATA_ROOTS); "
            f"use {list(BUILT_IN)} or upload one (POST /v1/datasets)",
            field="dataset",
        )
    resolved_roots = [Path(os.path.realpath(root)) for root in roots]
    given = Path(arg)
    # Relative directories are taken inside the first root; absolute ones must resolve inside some root.
    target = Path(os.path.realpath(given if given.is_absolute() else resolved_roots[0] / given))
    if not any(target == root or root in target.parents for root in resolved_roots):
        raise InvalidInput(
            f"dataset: the {kind} directory is outside the data roots this server allows (ATNL_DATA_ROOTS)", field="dataset"
        )
    return f"{kind}:{target}"
