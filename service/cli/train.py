"""``atnl train``: train a model and write its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.console import console, progress_bar


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
