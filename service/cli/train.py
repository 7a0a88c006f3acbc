"""``atnl train``: train a model and write its checkpoint."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from service.cli.console import console, progress_bar

if TYPE_CHECKING:
    from models.image_set import ImageSet
    from models.training import TrainConfig

FAMILY_HELP = "Model family, one of: {families} (atnl is the method; the others are baselines on the same backbone)."
DATASET_HELP = (
    "Data set: mnist-5k (5,000 MNIST digits, embedded), pose-digits (mnist-5k in 7 rotation bins), "
    "pose-photos (colour photo tiles in rotation bins), digits-8x8 (scikit-learn's 8x8 digits), "
    "mnist-idx:DIR (the four MNIST IDX files in DIR), folder:DIR, or an archive (.zip, .tar.gz) of one: "
    "one sub-folder a label or labels.csv, label order from labels.txt or numeric names."
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


@contextlib.contextmanager
def dataset_directory(spec: str) -> Iterator[str]:
    """``spec``, or for the path of an archive (a zip or tar.gz file, told by its first bytes),
    ``folder:`` its contents, unpacked under the API's caps into a temporary directory."""
    path = Path(spec)
    if ":" in spec or not path.is_file():
        yield spec
        return
    from service.archive_members import ArchiveCaps
    from service.archives import extract_archive
    from service.errors import ServiceError
    from service.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="atnl-archive-") as tmp, path.open("rb") as f:
        try:
            extract_archive(f, Path(tmp) / "data", ArchiveCaps.from_settings(get_settings()))
        except ServiceError as e:
            raise typer.BadParameter(f"{path}: {e.detail}", param_hint="--dataset") from e
        yield f"folder:{Path(tmp) / 'data'}"


def load_cli_dataset(cfg: TrainConfig) -> ImageSet:
    """The data set ``cfg`` names (a spec or an archive's path), or a one-line usage error."""
    from models.errors import InputError
    from models.pipeline import load_config_dataset

    with dataset_directory(cfg.dataset) as spec:
        try:
            data = load_config_dataset(replace(cfg, dataset=spec))
        except InputError as e:
            raise typer.BadParameter(str(e), param_hint="--dataset") from e
    data.spec = cfg.dataset
    return data


def train_cmd(
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    family: Annotated[str, typer.Option(help=FAMILY_HELP.format(families="atnl and the baselines"))] = "atnl",
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "mnist-5k",
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split.")] = None,
    latent_dim: Annotated[int | None, typer.Option(help="Latent size d.")] = None,
    margin: Annotated[float | None, typer.Option(help="ATNL angular margin per label gap, radians.")] = None,
    preprocess: Annotated[
        str | None, typer.Option(help="digits (ink crop), fit (centre crop + resize, colour kept) or auto.")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of the model's input; default: the data set's.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, weights and batches.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    option: Annotated[list[str] | None, typer.Option("--set", help="Any other TrainConfig field, as KEY=JSON.")] = None,
) -> None:
    """Train a model and write its checkpoint to OUT."""
    from models.device import resolve_device
    from models.errors import InputError
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    fields: dict[str, Any] = {"family": family, "dataset": dataset, "seed": seed, "device": device}
    named = (
        ("epochs", epochs),
        ("latent_dim", latent_dim),
        ("margin", margin),
        ("preprocess", preprocess),
        ("image_size", image_size),
    )
    for name, value in named:
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
    data = load_cli_dataset(cfg)

    with progress_bar() as bar:
        task = bar.add_task(f"train {cfg.family}", total=cfg.epochs, info="")

        def on_progress(p: dict[str, Any]) -> None:
            if p["step"] == p["steps"]:
                bar.update(task, completed=p["epoch"], info=f"loss {p['loss']:.4f}")

        path = train_to_checkpoint(cfg, out, on_progress=on_progress, data=data, overwrite=overwrite)
    from models.checkpoint import read_meta

    meta = read_meta(path)
    console.print(f"wrote {path} in {meta['training']['seconds']:.0f}s; metrics: {json.dumps(meta['metrics'])}")
