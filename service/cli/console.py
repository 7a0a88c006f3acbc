"""What every ``atnl`` command shares: the stderr console, progress bars and logging setup."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
"""Progress and status go to stderr, so ``--json`` output on stdout stays clean."""


def progress_bar() -> Progress:
    """A rich bar with a free ``info`` field (loss, stage) beside the counts and times."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def setup_logging(level: str) -> None:
    """The long-running processes' (serve, worker) log format."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
