"""The ``atnl`` Typer app: each command registered here, by name, from its own module."""

from __future__ import annotations

import typer

from benchmarks.cli import bench_app
from service.cli.evaluate import eval_cmd
from service.cli.serve import serve_cmd, worker_cmd
from service.cli.train import train_cmd

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ATNL: semantics-guided latent representations.")
app.command("train")(train_cmd)
app.command("eval")(eval_cmd)
app.command("serve")(serve_cmd)
app.command("worker")(worker_cmd)
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
