"""The decoder sweep runner (docs/EXPERIMENTS.md): train one setting on mnist-5k, print and append its metrics.

    .venv/bin/python docs/experiments/decoder_sweep.py NAME '{"consistency_weight": 1.0, "threads": 1}'

The JSON holds TrainConfig fields that differ from the defaults (``threads`` sets torch's
CPU threads). Each run appends one line to docs/experiments/decoder_sweep.jsonl: the latent
metrics and reconstruction identity of ``models.metrics``, SPS and coverage over 300
seeded test pairs (slerp), and hallucination quality (k = 5, 50 a label) with the
``restyle`` strategy (ordered models) and ``same``. The runs in that file were made with
the defaults of their day (the commit of this file's first version changed them): the
``over`` field of each is relative to the prototype-decoder recipe, see docs/EXPERIMENTS.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.cache import cached_judge
from models.data import load_dataset
from models.metrics import hallucination_quality, latent_metrics, semantic_path_score
from models.training import TrainConfig, train

LOG = Path(__file__).with_suffix(".jsonl")


def main(name: str, overrides: dict[str, object], pairs: int = 300) -> dict[str, object]:
    torch.set_num_threads(int(overrides.pop("threads", 1)))  # type: ignore[call-overload]
    cfg = TrainConfig(**overrides)  # type: ignore[arg-type]
    data = load_dataset(cfg.dataset)
    start = time.monotonic()
    result = train(cfg, data)
    out: dict[str, object] = {"name": name, "over": overrides, "train_s": round(time.monotonic() - start, 1)}
    model, tr, te = result.model, result.train_indices, result.test_indices
    out.update(latent_metrics(model, data, tr, te))
    judge, _ = cached_judge(data, tr, te, seed=cfg.seed)
    if model.cfg.spherical:
        path = semantic_path_score(model, judge, data.images[te], data.labels[te], "slerp", pairs, seed=0)
        out.update(sps=path["sps"], cov=path["coverage"])
    for strategy in ["restyle", "same"] if model.cfg.num_labels else ["same"]:
        out[strategy] = hallucination_quality(model, judge, data, tr, te, strategy)
    with LOG.open("a") as f:
        f.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
