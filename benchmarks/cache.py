"""Resumable benchmarks: trained models and finished measurements cached on disk.

A full benchmark trains a dozen models on a shared 2-core CPU; a run that is
stopped half-way picks up where it was. The key covers the training config, the
data (spec, size, a hash of the labels) and the source of ``models/`` itself,
so a change to the recipe or the code retrains instead of reusing a stale model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from models.checkpoint import load_checkpoint, read_meta, save_checkpoint
from models.data import ImageSet
from models.judge import JudgeCNN, get_judge
from models.networks import SemanticAutoencoder
from models.training import TrainConfig, TrainResult, train
from service.settings import cache_dir

MODELS_DIR = Path(__file__).resolve().parents[1]


def code_hash() -> str:
    """Hash of every ``models/**/*.py`` except the benchmarks themselves."""
    h = hashlib.sha256()
    for path in sorted(MODELS_DIR.rglob("*.py")):
        if "bench" not in path.relative_to(MODELS_DIR).parts:
            h.update(path.relative_to(MODELS_DIR).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:16]


def run_key(cfg: TrainConfig, data: ImageSet, extra: Any = None) -> str:
    payload = [cfg.to_dict(), data.spec, len(data), data.labels.tolist(), code_hash(), extra]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def bench_cache_dir() -> Path:
    return cache_dir() / "bench"


def cached_judge(data: ImageSet, train_indices: list[int], test_indices: list[int], seed: int = 0) -> tuple[JudgeCNN, float]:
    """``models.judge.get_judge`` kept under ATNL_CACHE_DIR (judges/), as ``atnl eval`` keeps it."""
    return get_judge(data, train_indices, test_indices, seed=seed, cache_dir=cache_dir())


def cached_train(cfg: TrainConfig, data: ImageSet, on_progress: Any = None) -> tuple[SemanticAutoencoder, dict[str, Any]]:
    """``train(cfg, data)``, or the model a previous run saved for the same key.

    Returns the eval-mode model on the CPU and {train_indices, test_indices,
    objective, seconds, cached}."""
    path = bench_cache_dir() / "models" / run_key(cfg, data)
    if (path / "model.json").is_file():
        model = load_checkpoint(path)
        info = dict(read_meta(path)["bench"])
        return model.eval(), {**info, "cached": True}
    result: TrainResult = train(cfg, data, on_progress=on_progress)
    info = {
        "train_indices": result.train_indices,
        "test_indices": result.test_indices,
        "objective": result.objective,
        "seconds": round(result.seconds, 1),
    }
    save_checkpoint(result.model, {"family": cfg.family, "train_config": cfg.to_dict(), "bench": info}, path, overwrite=True)
    return result.model.eval(), {**info, "cached": False}


class ResultCache:
    """A JSON file of finished measurements, written after each one."""

    def __init__(self, key: str) -> None:
        self.path = bench_cache_dir() / "results" / f"{key}.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def put(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)
