"""The ``atnl`` Typer app: each command registered here, by name, from its own module."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from benchmarks.cli import bench_app
from service.cli.evaluate import eval_cmd
from service.cli.serve import serve_cmd, worker_cmd
from service.cli.train import TrainCommand, train_cmd

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
"""``-h`` beside ``--help``; every sub-command and the bench group inherit it from the app's context."""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
    help="ATNL: semantics-guided latent representations. Train, evaluate, serve and benchmark models.",
)
app.command("train", cls=TrainCommand)(train_cmd)
app.command("eval")(eval_cmd)
app.command("serve")(serve_cmd)
app.command("worker")(worker_cmd)
app.add_typer(bench_app, name="bench")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's ``version``), read from its metadata."""
    try:
        return version("atnl")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"atnl {package_version()}")
        raise typer.Exit()


@app.callback()
def atnl_options(
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=print_version)
    ] = False,
) -> None:
    """Options of ``atnl`` itself, before any command."""


def main() -> None:
    app()
