"""The ``atnl`` command: train, eval, serve, worker, bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ATNL: semantics-guided latent representations.")
console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    family: Annotated[str, typer.Option(help="atnl, ae, vae, vae-tl, aae or acai.")] = "atnl",
    dataset: Annotated[str, typer.Option(help="mnist-5k, pose-digits, mnist-idx:DIR or folder:DIR.")] = "mnist-5k",
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split.")] = None,
    latent_dim: Annotated[int | None, typer.Option(help="Latent size d.")] = None,
    margin: Annotated[float | None, typer.Option(help="ATNL angular margin per label gap, radians.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, weights and batches.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    option: Annotated[list[str] | None, typer.Option("--set", help="Any other TrainConfig field, as KEY=JSON.")] = None,
) -> None:
    """Train a model and write its checkpoint to OUT."""
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    fields: dict[str, Any] = {"family": family, "dataset": dataset, "seed": seed, "device": device}
    for name, value in (("epochs", epochs), ("latent_dim", latent_dim), ("margin", margin)):
        if value is not None:
            fields[name] = value
    for item in option or []:
        key, _, raw = item.partition("=")
        fields[key] = json.loads(raw)
    try:
        cfg = TrainConfig.from_dict(fields)
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(str(e)) from e
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; pass --overwrite to replace it")

    with progress_bar() as bar:
        task = bar.add_task(f"train {cfg.family}", total=cfg.epochs, info="")

        def on_progress(p: dict[str, Any]) -> None:
            if p["step"] == p["steps"]:
                bar.update(task, completed=p["epoch"], info=f"loss {p['loss']:.4f}")

        path = train_to_checkpoint(cfg, out, on_progress=on_progress, overwrite=overwrite)
    from models.checkpoint import read_meta

    meta = read_meta(path)
    console.print(f"wrote {path} in {meta['training']['seconds']:.0f}s; metrics: {json.dumps(meta['metrics'])}")


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    pairs: Annotated[int, typer.Option(help="Seeded test pairs for the semantic path score.")] = 500,
    save: Annotated[bool, typer.Option(help="Store the metrics in the checkpoint's model.json.")] = True,
) -> None:
    """The DESIGN §6 metrics of one checkpoint, on its recorded test split."""
    from models.checkpoint import CheckpointError, load_checkpoint, update_meta
    from models.data import load_dataset, split_indices
    from models.metrics import evaluate

    try:
        model = load_checkpoint(checkpoint)
    except (CheckpointError, OSError) as e:
        raise typer.BadParameter(str(e)) from e
    meta = model.meta
    data = load_dataset(meta["data"]["spec"])
    train_idx, test_idx = split_indices(data.labels, meta["data"]["test_fraction"], meta["data"]["split_seed"])
    if test_idx != meta["data"]["test_indices"]:
        raise typer.BadParameter("the data set no longer gives the recorded test split")
    with console.status("evaluating (judge, probes, semantic paths)"):
        metrics = evaluate(model, data, train_idx, test_idx, num_pairs=pairs)
    if save:
        update_meta(checkpoint, metrics=metrics)
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{checkpoint} ({meta['family']}, {meta['data']['spec']}, test n={len(test_idx)})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metric_rows(metrics):
        table.add_row(key, value)
    Console().print(table)


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``atnl eval``'s table: one (name, value) row per metric, a path score's three numbers on one
    row, and the hallucination quality (see models.metrics) on three."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, float):
            rows.append((key, f"{value:.4f}"))
        elif key == "hallucination":
            rows.append(("hallucination (strategy, k, a label)", f"{value['strategy']}, {value['shots']}, {value['per_class']}"))
            agreement = f"{value['judge_agreement']:.3f} / {value['diversity_ratio']:.3f}"
            rows.append(("hallucination judge agreement / diversity ratio", agreement))
            rows.append(("hallucination Fréchet (jittered real)", f"{value['frechet']:.2f} ({value['jittered_frechet']:.2f})"))
        elif isinstance(value, dict):
            path = f"{value['sps']:.3f} / {value['coverage']:.3f} / {value['monotonicity']:.3f}"
            rows.append((f"{key} (sps / coverage / monotonicity)", path))
        else:
            rows.append((key, str(value)))
    return rows


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default ATNL_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default ATNL_PORT, 8000).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """The REST API. An empty model store first trains the default model (progress in the log)."""
    import logging

    import uvicorn

    from service.settings import get_settings

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


@app.command("worker")
def worker_cmd(
    burst: Annotated[bool, typer.Option(help="Exit once the queue is empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default: RQ's unique one).")] = None,
) -> None:
    """An RQ worker on the training queue (ATNL_REDIS_URL)."""
    import logging

    from service.settings import get_settings
    from service.worker import run_worker

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(settings, burst=burst, name=name)


from service.bench_cli import bench_app  # noqa: E402 (the sub-app imports this module's helpers lazily)

app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
