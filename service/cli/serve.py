"""``atnl serve`` and ``atnl worker``: the API process and an RQ training worker."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.console import setup_logging


def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default ATNL_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default ATNL_PORT, 8000).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """The REST API. An empty model store first trains the default model (progress in the log)."""
    import uvicorn

    from service.settings import get_settings

    settings = get_settings()
    setup_logging(settings.log_level)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


def worker_cmd(
    burst: Annotated[bool, typer.Option(help="Exit once the queue is empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default: RQ's unique one).")] = None,
) -> None:
    """An RQ worker on the training queue (ATNL_REDIS_URL)."""
    from service.settings import get_settings
    from service.training.worker import run_worker

    settings = get_settings()
    setup_logging(settings.log_level)
    run_worker(settings, burst=burst, name=name)
