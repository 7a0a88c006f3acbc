"""Which data sets a training request over HTTP may name (the CLI is not limited).

Built-in data sets are always open. ``mnist-idx:DIR`` and ``folder:DIR`` are open only
when DIR, with every symlink resolved, lies inside one of ATNL_DATA_ROOTS; otherwise
a client could make the worker read any directory the worker can. Refusals never echo
a server path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from service.errors import InvalidInput

BUILT_IN = ("mnist-5k", "pose-digits")
"""Data sets shipped with the package (models.data), open to every training request."""
DIRECTORY_KINDS = ("mnist-idx", "folder")
"""Data set kinds that read a directory: allowed under ATNL_DATA_ROOTS only."""


def allowed_dataset(spec: str, roots: Sequence[Path]) -> str:
    """``spec`` as the worker should read it (directory resolved), or InvalidInput naming ``dataset``."""
    if spec in BUILT_IN:
        return spec
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in DIRECTORY_KINDS or not arg:
        raise InvalidInput(
            f"dataset must be one of {list(BUILT_IN)} or {' / '.join(k + ':DIR' for k in DIRECTORY_KINDS)}", field="dataset"
        )
    if not roots:
        raise InvalidInput(
            f"dataset: {kind}:DIR data sets are not open over HTTP on this server (no ATNL_DATA_ROOTS); use {list(BUILT_IN)}",
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
