"""The ``atnl`` Typer app: each command registered here, by name, from its own module."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Annotated

import typer

from service.cli.evaluate import eval_cmd
from service.cli.offline import hallucinate_cmd, interpolate_cmd
from service.cli.serve import serve_cmd, worker_cmd
from service.cli.train import TrainCommand, train_cmd
from service.version import package_version

PLUGIN_GROUP = "atnl.commands"
"""Entry points that add a command group to ``atnl`` by name: the benchmarks add ``bench``
(pyproject.toml), so the product itself never imports them, and an install without them works."""
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
app.command("interpolate")(interpolate_cmd)
app.command("hallucinate")(hallucinate_cmd)


def add_plugins(target: typer.Typer) -> None:
    """Each installed PLUGIN_GROUP entry point (a Typer app) as a command group; one that cannot
    be imported here is left out, with a debug line."""
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            target.add_typer(plugin.load(), name=plugin.name)
        except ImportError as e:
            logging.getLogger("atnl.cli").debug("command group %s left out: %s", plugin.name, e)


add_plugins(app)


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
