"""Train-and-save as one call: what the CLI and the RQ training task both run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import save_checkpoint
from models.data import DatasetError, ImageSet, load_dataset
from models.metrics import latent_metrics
from models.networks import SemanticAutoencoder
from models.training import ProgressFn, TrainConfig, TrainResult, train


def checkpoint_meta(cfg: TrainConfig, data: ImageSet, result: TrainResult, metrics: dict[str, Any]) -> dict[str, Any]:
    """model.json content (docs/API.md §6) apart from what save_checkpoint adds."""
    return {
        "family": cfg.family,
        "train_config": cfg.to_dict(),
        "loss": result.objective,
        "data": {
            "spec": data.spec,
            "split_seed": cfg.seed,
            "test_fraction": cfg.test_fraction,
            "n_train": len(result.train_indices),
            "n_test": len(result.test_indices),
            "test_indices": result.test_indices,
            "labels": data.label_names,
            "counts": data.counts,
            "image_shape": data.image_shape,
            "preprocess": data.preprocess,
        },
        "labels": {"names": data.label_names, "order": "ordinal: index i comes before i+1"},
        "metrics": metrics,
        "training": {"seconds": round(result.seconds, 2), "history": result.history},
    }


def load_config_dataset(cfg: TrainConfig, upload_root: Path | None = None) -> ImageSet:
    """The data set ``cfg`` trains on, prepared as it asks (``models.data.load_dataset``)."""
    return load_dataset(cfg.dataset, cfg.preprocess, cfg.image_size, upload_root)


def load_model_dataset(model: SemanticAutoencoder, upload_root: Path | None = None) -> ImageSet:
    """The data set ``model`` was trained on (its model.json's ``data.spec``), prepared as it was."""
    data = model.meta.get("data") or {}
    spec = data.get("spec")
    if not isinstance(spec, str):
        raise DatasetError("the model records no data set (data.spec)")
    return load_dataset(spec, str(data.get("preprocess", "auto")), model.cfg.image_size, upload_root)


def train_to_checkpoint(
    cfg: TrainConfig,
    out: str | Path,
    on_progress: ProgressFn | None = None,
    should_stop: Any = None,
    data: ImageSet | None = None,
    overwrite: bool = False,
    upload_root: Path | None = None,
) -> Path:
    """Load the data set (``upload:ID`` from ``upload_root``), train, measure the cheap metrics,
    save atomically to ``out``."""
    data = data if data is not None else load_config_dataset(cfg, upload_root)
    result = train(cfg, data, on_progress=on_progress, should_stop=should_stop)
    metrics = latent_metrics(result.model, data, result.train_indices, result.test_indices)
    return save_checkpoint(result.model, checkpoint_meta(cfg, data, result, metrics), out, overwrite=overwrite)
