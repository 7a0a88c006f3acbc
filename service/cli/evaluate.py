"""``atnl eval``: the metrics of one checkpoint, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from service.cli.console import console


def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    pairs: Annotated[int, typer.Option(help="Seeded test pairs for the semantic path score.")] = 500,
    save: Annotated[bool, typer.Option(help="Store the metrics in the checkpoint's model.json.")] = True,
) -> None:
    """The metrics of one checkpoint (docs/API.md §8.1), on its recorded test split."""
    from models.checkpoint import CheckpointError, load_checkpoint, update_meta
    from models.data import DatasetError, split_indices
    from models.metrics import evaluate
    from models.pipeline import load_model_dataset
    from service.dataset_store import open_datasets
    from service.errors import ServiceError
    from service.settings import cache_dir, get_settings

    try:
        model = load_checkpoint(checkpoint)
    except (CheckpointError, OSError) as e:
        raise typer.BadParameter(str(e)) from e
    meta = model.meta
    try:
        data = load_model_dataset(model, open_datasets(get_settings()).upload_root((meta.get("data") or {}).get("spec")))
    except (DatasetError, ServiceError) as e:  # a folder: data set that moved since training, an upload deleted
        raise typer.BadParameter(f"its data set cannot be read: {e}", param_hint="CHECKPOINT") from e
    train_idx, test_idx = split_indices(data.labels, meta["data"]["test_fraction"], meta["data"]["split_seed"])
    if test_idx != meta["data"]["test_indices"]:
        raise typer.BadParameter("the data set no longer gives the recorded test split")
    with console.status("evaluating (judge, probes, semantic paths)"):
        metrics = evaluate(model, data, train_idx, test_idx, num_pairs=pairs, cache_dir=cache_dir())
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
