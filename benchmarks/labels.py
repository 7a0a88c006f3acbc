"""`atnl bench labels`: is every hallucinated image labelled y read as a y by classifiers the model never saw?

An ATNL model with the TrainConfig defaults on mnist-5k (the quality bench's run, from the
bench cache) makes ``per_class`` images a label with every strategy from each few-shot set:
the README's example (``examples/3.png 3b 7 7b 9 9b``, labels 3, 3, 7, 7, 9, 9: no 8, which
only ``ordinal`` paths make) and ``draws`` seeded sets of ``shots`` test images of each of the
ten labels. Each set is run with the self-check (``filter=model``, the API's default) and
without it (``filter=none``, the same first draws). Three outside judges, trained on the
model's train split only, read every image: the project's judge (models.judge, 3×3 CNN), a
wider CNN with batch norm and 5×5 first filters, and an RBF support-vector machine on pixels.
A cell's figure is the lowest, over the labels made, of the share of a label's images a judge
reads as that label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.svm import SVC
from torch import nn

from benchmarks.cache import cached_judge, cached_train
from benchmarks.report import ProgressFn, hardware, md_table, torch_threads, write_report
from models.data import ImageSet, load_dataset
from models.hallucination import STRATEGIES, hallucinate
from models.judge import fit_classifier
from models.networks import SemanticAutoencoder
from models.training import TrainConfig
from service import imaging
from service.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
README_SET = (("3", 3), ("3b", 3), ("7", 7), ("7b", 7), ("9", 9), ("9b", 9))
"""The README's hallucination example: file stem in examples/, label."""
TARGET = 0.95
"""The least share of each label's images every judge must read as that label."""


@dataclass
class LabelsConfig:
    per_class: int = 20
    shots: int = 5
    draws: int = 3
    """Seeded few-shot sets of all ten labels, besides the README's."""
    epochs: int | None = None
    """None: the TrainConfig default (the recipe)."""
    judge_epochs: int = 8
    seed: int = 0
    device: str = "auto"
    threads: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> LabelsConfig:
        return cls(**{"per_class": 3, "draws": 1, "epochs": 1, "judge_epochs": 1, "threads": 1, **overrides})


class BatchNormJudge(nn.Module):
    """(N, 1, 28, 28) -> (N, K) logits: wider than the project's judge, batch norm, 5×5 first filters."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 48, 5, padding=2), nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(48, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(96 * 7 * 7, num_labels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


Judge = Callable[[torch.Tensor], torch.Tensor]
"""images (N, 1, 28, 28) -> (N,) labels."""


def outside_judges(data: ImageSet, train: list[int], test: list[int], cfg: LabelsConfig) -> dict[str, tuple[Judge, float]]:
    """Three classifiers trained on ``data[train]`` only, each with its accuracy on ``data[test]``."""
    cnn, _ = cached_judge(data, train, test, seed=cfg.seed)
    torch.manual_seed(cfg.seed + 7)
    bn = BatchNormJudge(data.num_labels)
    fit_classifier(bn, data.images[train], data.labels[train], cfg.judge_epochs, cfg.seed + 7)
    flat = data.images.reshape(len(data), -1).numpy()
    svm = SVC(C=5.0, gamma="scale").fit(flat[train], data.labels[train].numpy())
    judges: dict[str, Judge] = {
        "judge CNN": cnn.predict,
        "batch-norm CNN": lambda x: bn.eval()(x).argmax(1),
        "RBF SVM": lambda x: torch.from_numpy(svm.predict(x.reshape(len(x), -1).numpy())),
    }
    with torch.no_grad():
        return {name: (j, float((j(data.images[test]) == data.labels[test]).float().mean())) for name, j in judges.items()}


def few_shot_sets(data: ImageSet, test: list[int], cfg: LabelsConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The README's example (through the API's preprocessing) and ``draws`` seeded k-shot sets of the test split."""
    s = Settings(_env_file=None)
    limits = imaging.ImageCaps(s.max_pixels, s.max_decoded_bytes)
    readme = np.stack([imaging.load_image((EXAMPLES / f"{n}.png").read_bytes(), 28, "digits", limits)[0] for n, _ in README_SET])
    sets = {"README example": (torch.from_numpy(readme)[:, None], torch.tensor([y for _, y in README_SET]))}
    rng = np.random.default_rng(cfg.seed)
    labels = data.labels[test].numpy()
    for d in range(cfg.draws):
        picks = [
            int(test[i])
            for k in range(data.num_labels)
            for i in rng.choice(np.flatnonzero(labels == k), cfg.shots, replace=False)
        ]
        sets[f"{cfg.shots}-shot draw {d}"] = (data.images[picks], data.labels[picks])
    return sets


def lowest_agreement(images: torch.Tensor, labels: torch.Tensor, judge: Judge) -> tuple[float, int]:
    """The lowest share of a label's images ``judge`` reads as that label, and that label (0 and -1: no images)."""
    if not len(images):
        return 0.0, -1
    with torch.no_grad():
        right = judge(images) == labels
    shares = {int(k): float(right[labels == k].float().mean()) for k in labels.unique()}
    worst = min(shares, key=lambda k: shares[k])
    return shares[worst], worst


def measure(
    model: SemanticAutoencoder, x: torch.Tensor, y: torch.Tensor, strategy: str, judges: dict[str, Judge], cfg: LabelsConfig
) -> dict[str, Any]:
    row: dict[str, Any] = {"strategy": strategy}
    for filter in ("model", "none"):
        made = hallucinate(model, x, y, 10, per_class=cfg.per_class, strategy=strategy, seed=cfg.seed, filter=filter)
        images = torch.stack([s.image for s in made.samples]) if made.samples else x[:0]
        labels = torch.tensor([s.label for s in made.samples], dtype=torch.long)
        row[filter] = {
            "images": len(made.samples),
            "replaced": made.replaced,
            "dropped": made.dropped,
            "disagreements": [(d.index, d.given, d.read) for d in made.disagreements],
            "lowest": {name: lowest_agreement(images, labels, j) for name, j in judges.items()},
        }
    return row


def run_labels(cfg: LabelsConfig, out: Path, command: str, on_progress: ProgressFn) -> dict[str, Any]:
    start = time.monotonic()
    with torch_threads(cfg.threads):
        data = load_dataset("mnist-5k")
        fields: dict[str, Any] = {"family": "atnl", "dataset": "mnist-5k", "seed": cfg.seed, "device": cfg.device}
        if cfg.epochs is not None:
            fields["epochs"] = cfg.epochs
        model, info = cached_train(TrainConfig(**fields), data)  # the quality bench's ATNL run: same key
        judged = outside_judges(data, info["train_indices"], info["test_indices"], cfg)
        judges = {name: j for name, (j, _) in judged.items()}
        sets = few_shot_sets(data, info["test_indices"], cfg)
        results: dict[str, list[dict[str, Any]]] = {}
        for n, (name, (x, y)) in enumerate(sets.items()):
            results[name] = [measure(model, x, y, s, judges, cfg) for s in STRATEGIES]
            on_progress("few-shot sets", n + 1, len(sets))
    report = {
        "config": asdict(cfg),
        "judge_test_accuracy": {name: acc for name, (_, acc) in judged.items()},
        "results": results,
        "seconds": round(time.monotonic() - start, 1),
    }
    write_report(out, "labels", "Do hallucinated images show their labels?", command, hardware(cfg.device), body(report), report)
    return report


def body(r: dict[str, Any]) -> str:
    judges = list(r["judge_test_accuracy"])
    accuracy = ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in r["judge_test_accuracy"].items())
    rows, worst = [], {"model": 1.0, "none": 1.0}
    for set_name, cells in r["results"].items():
        for c in cells:
            for f in worst:
                worst[f] = min(worst[f], *(share for share, _ in c[f]["lowest"].values()))
            checked, raw = c["model"], c["none"]
            rows.append(
                [set_name, c["strategy"], checked["images"], f"{checked['replaced']} / {checked['dropped']}"]
                + [f"{checked['lowest'][j][0]:.2f} ({checked['lowest'][j][1]})" for j in judges]
                + [f"{raw['lowest'][j][0]:.2f}" for j in judges]
            )
    header = ["set", "strategy", "images", "replaced / dropped", *judges, *(f"{j}, unchecked" for j in judges)]
    verdict = "met" if worst["model"] >= TARGET else "not met"
    return (
        f"{__doc__.split(chr(10), 2)[2].strip()}\n\nJudges' accuracy on the real test split: {accuracy}.\n\n"
        f"Each cell: the lowest share of a label's images the judge reads as that label (that label in brackets), "
        f"with the self-check; `unchecked`: the same first draws kept as they came. {r['config']['per_class']} images "
        f"a label asked.\n\n{md_table(header, rows)}\n\n"
        f"Lowest cell with the self-check {worst['model']:.2f}, without {worst['none']:.2f}; target >= {TARGET} for every "
        f"label, strategy, set and judge: {verdict}.\n"
    )
