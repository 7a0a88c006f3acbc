"""``atnl train``: train a model and write its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from service.cli.console import console, progress_bar

FAMILY_HELP = "Model family, one of: {families} (atnl is the method; the others are baselines on the same backbone)."
DATASET_HELP = (
    "Data set: mnist-5k (5,000 MNIST digits, embedded), pose-digits (mnist-5k in 7 rotation bins), "
    "mnist-idx:DIR (the four MNIST IDX files in DIR) or folder:DIR (one sub-folder a label, order = sorted names)."
)


class TrainCommand(TyperCommand):
    """``atnl train``, whose ``--family`` help lists models.families.FAMILIES. The list is read when
    the help is shown: importing ``models`` imports torch, which no other ``atnl`` start should pay."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own (vendored) click types
        from models.families import FAMILIES

        for param in self.params:
            if isinstance(param, TyperOption) and param.name == "family":
                param.help = FAMILY_HELP.format(families=", ".join(FAMILIES))
        super().format_help(ctx, formatter)


def set_options(items: list[str]) -> dict[str, Any]:
    """``--set KEY=JSON`` options as TrainConfig fields; a malformed one is a usage error, in one line."""
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=JSON (e.g. --set lr=0.0005)", param_hint="--set")
        try:
            fields[key] = json.loads(raw)
        except json.JSONDecodeError as e:
            quoted = f"""--set {key}='"{raw}"'""" if raw else f"--set {key}=VALUE"
            raise typer.BadParameter(
                f"{item!r}: the value is not JSON ({e.msg}); a string needs quotes: {quoted}", param_hint="--set"
            ) from e
    return fields


def train_cmd(
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    family: Annotated[str, typer.Option(help=FAMILY_HELP.format(families="atnl and the baselines"))] = "atnl",
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "mnist-5k",
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split.")] = None,
    latent_dim: Annotated[int | None, typer.Option(help="Latent size d.")] = None,
    margin: Annotated[float | None, typer.Option(help="ATNL angular margin per label gap, radians.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, weights and batches.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    option: Annotated[list[str] | None, typer.Option("--set", help="Any other TrainConfig field, as KEY=JSON.")] = None,
) -> None:
    """Train a model and write its checkpoint to OUT."""
    from models.data import load_dataset
    from models.device import resolve_device
    from models.errors import InputError
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    fields: dict[str, Any] = {"family": family, "dataset": dataset, "seed": seed, "device": device}
    for name, value in (("epochs", epochs), ("latent_dim", latent_dim), ("margin", margin)):
        if value is not None:
            fields[name] = value
    fields.update(set_options(option or []))
    try:
        cfg = TrainConfig.from_dict(fields)
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(str(e)) from e
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; pass --overwrite to replace it")
    # The device and the data set before any training: a wrong one is one line, not a traceback.
    try:
        resolve_device(cfg.device)
    except InputError as e:
        raise typer.BadParameter(str(e), param_hint="--device") from e
    try:
        data = load_dataset(cfg.dataset)
    except InputError as e:
        raise typer.BadParameter(str(e), param_hint="--dataset") from e

    with progress_bar() as bar:
        task = bar.add_task(f"train {cfg.family}", total=cfg.epochs, info="")

        def on_progress(p: dict[str, Any]) -> None:
            if p["step"] == p["steps"]:
                bar.update(task, completed=p["epoch"], info=f"loss {p['loss']:.4f}")

        path = train_to_checkpoint(cfg, out, on_progress=on_progress, data=data, overwrite=overwrite)
    from models.checkpoint import read_meta

    meta = read_meta(path)
    console.print(f"wrote {path} in {meta['training']['seconds']:.0f}s; metrics: {json.dumps(meta['metrics'])}")
