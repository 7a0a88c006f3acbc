"""`atnl bench quality`: paper Table 1, Figure 5 and Figure 6, measured.

For every data set and family (all on the shared backbone, each with the
TrainConfig defaults): linear-probe and 5-NN cosine latent accuracy,
reconstruction, the semantic path score (SPS) with coverage and monotonicity
for lerp (every family) and slerp (spherical families: ATNL; ATNL with lerp
is the paper's ATNL*), t-SNE plots of the test latents in 2-D and 3-D, and a
Figure 6 replica: the same two test digits interpolated by every family, each
frame captioned with the independent judge's label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bench.cache import cached_train
from models.bench.plots import path_figure, tsne, tsne_grid
from models.bench.report import ProgressFn, hardware, md_table, no_progress, torch_threads, write_report
from models.data import ImageSet, load_dataset, split_indices
from models.device import resolve_device
from models.geometry import interpolate
from models.judge import get_judge
from models.metrics import SPS_FRAMES, SPS_PAIRS, batched, latent_metrics, semantic_path_score
from models.networks import SemanticAutoencoder
from models.training import TrainConfig

FAMILY_ORDER = ("ae", "vae", "aae", "acai", "vae-tl", "atnl")
DATASETS = ("mnist-5k", "pose-digits")
DISPLAY = {"ae": "AE", "vae": "VAE", "aae": "AAE", "acai": "ACAI", "vae-tl": "VAE-TL", "atnl": "ATNL"}
FIGURE6_ROWS = (("AE", "ae", "lerp"), ("VAE", "vae", "lerp"), ("AAE", "aae", "lerp"), ("ACAI", "acai", "lerp"),
                ("ATNL*", "atnl", "lerp"), ("ATNL", "atnl", "slerp"))  # fmt: skip
"""(row name, family, interpolation) of the Figure 6 replica, in the paper's order."""
FIGURE6_LABELS = (0, 5)
"""The endpoint labels of the Figure 6 replica (a "0" and a "5"), when the data set has them."""
PAPER_TABLE1 = {"MNIST (full)": {"AE": 94.63, "VAE": 96.42, "VAE-TL": 98.46, "ATNL": 99.14},
                "Multi-PIE": {"AE": 84.80, "VAE": 86.26, "VAE-TL": 91.36, "ATNL": 92.47}}  # fmt: skip
"""Paper Table 1, linear-probe latent accuracy (%)."""
TARGET_SPS, TARGET_COVERAGE = 0.8, 0.97
"""Issue 4's bar for ATNL with slerp."""
FAR_BELOW = 0.5
"""A row is "far below" ATNL when its SPS is under this share of ATNL's slerp SPS."""
PROBE_TIE = 0.01
"""Families whose seed-``seed`` probe is within this of the best get ``probe_seeds`` runs: on a
1,000-image test split one run's probe has a standard error of about 0.4 points."""


@dataclass
class QualityConfig:
    datasets: tuple[str, ...] = DATASETS
    families: tuple[str, ...] = FAMILY_ORDER
    seed: int = 0
    """Seeds the split, the training runs, the judge and the SPS pairs."""
    device: str = "auto"
    threads: int = 0
    """torch CPU threads while the benchmark runs (0: leave torch's setting; restored afterwards)."""
    pairs: int = SPS_PAIRS
    """Seeded test pairs per SPS."""
    per_class: int | None = None
    """Use only the first N images of each label (None: the whole data set)."""
    epochs: int | None = None
    """None: TrainConfig's default epochs for every family (the lead's recipe)."""
    tsne_points: int = 500
    """Test latents per t-SNE plot (a seeded subset; t-SNE is the slow part on CPU)."""
    tsne_iter: int = 500
    probe_seeds: int = 3
    """Seeds (``seed``, ``seed`` + 1, ...; each its own split) the near-best families' probe is averaged over."""

    @classmethod
    def quick(cls, **overrides: Any) -> QualityConfig:
        """The whole pipeline, tiny: 20 images a label, 1 epoch, 10 pairs."""
        base: dict[str, Any] = {
            "per_class": 20,
            "epochs": 1,
            "pairs": 10,
            "threads": 1,
            "tsne_points": 40,
            "tsne_iter": 250,
            "probe_seeds": 2,
        }
        return cls(**{**base, **overrides})


@dataclass
class FamilyRun:
    family: str
    model: SemanticAutoencoder
    metrics: dict[str, Any] = field(default_factory=dict)
    codes: np.ndarray | None = None
    """(N_test, d) the latents the decoder consumes, for t-SNE."""


def first_per_class(data: ImageSet, n: int) -> ImageSet:
    idx = torch.cat([(data.labels == k).nonzero().squeeze(1)[:n] for k in range(data.num_labels)])
    return data.subset(idx.sort().values)


def train_config(cfg: QualityConfig, family: str, dataset: str, seed: int | None = None) -> TrainConfig:
    """TrainConfig defaults (the recipe) with only family, data set, seed, device and, if set, epochs."""
    seed = cfg.seed if seed is None else seed
    fields: dict[str, Any] = {"family": family, "dataset": dataset, "seed": seed, "device": cfg.device}
    if cfg.epochs is not None:
        fields["epochs"] = cfg.epochs
    return TrainConfig(**fields)


def training_steps(stage: str, on_progress: ProgressFn) -> Callable[[dict[str, Any]], None]:
    """A training run's per-step callback that reports (stage, steps done, steps in all)."""
    return lambda p: on_progress(stage, (p["epoch"] - 1) * p["steps"] + p["step"], p["epochs"] * p["steps"])


def run_family(
    cfg: QualityConfig, family: str, data: ImageSet, judge: Any, on_progress: ProgressFn
) -> tuple[FamilyRun, list[int], list[int]]:
    tc = train_config(cfg, family, data.spec)
    stage = f"{data.spec}: train {family}"
    model, info = cached_train(tc, data, on_progress=training_steps(stage, on_progress))
    on_progress(stage, 1, 1)
    tr, te = info["train_indices"], info["test_indices"]
    metrics: dict[str, Any] = {
        "train_seconds": info["seconds"],
        "reused_cached_model": info["cached"],
        "epochs": tc.epochs,
        "objective": info["objective"],
    }
    metrics.update(latent_metrics(model, data, tr, te))
    x_te, y_te = data.images[te], data.labels[te]
    methods = ["lerp", "slerp"] if model.cfg.spherical else ["lerp"]
    for method in methods:
        metrics[f"path_{method}"] = semantic_path_score(model, judge, x_te, y_te, method, cfg.pairs, seed=cfg.seed)
    codes = batched(model.code, x_te).numpy()
    return FamilyRun(family, model, metrics, codes), tr, te


def seeded_probes(cfg: QualityConfig, runs: dict[str, FamilyRun], data: ImageSet, on_progress: ProgressFn) -> None:
    """Adds ``linear_probe_seeds`` (one probe per seed, the first the run's own) and their mean and
    std to the families within ``PROBE_TIE`` of the best probe, so that a near tie is settled by
    more than one split; each extra seed trains the family afresh on its own seeded split."""
    best = max(r.metrics["linear_probe_acc"] for r in runs.values())
    close = [f for f, r in runs.items() if best - r.metrics["linear_probe_acc"] <= PROBE_TIE]
    for family in close:
        probes = [runs[family].metrics["linear_probe_acc"]]
        for seed in range(cfg.seed + 1, cfg.seed + cfg.probe_seeds):
            stage = f"{data.spec}: {family} probe, seed {seed}"
            tc = train_config(cfg, family, data.spec, seed)
            model, info = cached_train(tc, data, on_progress=training_steps(stage, on_progress))
            probes.append(latent_metrics(model, data, info["train_indices"], info["test_indices"])["linear_probe_acc"])
        runs[family].metrics.update(
            linear_probe_seeds=probes, linear_probe_mean=float(np.mean(probes)), linear_probe_std=float(np.std(probes))
        )


def figure6_pair(data: ImageSet, test_idx: list[int], judge: Any) -> tuple[int, int]:
    """Indices of the first judge-correct test images labelled 0 and 5 (else the lowest and the highest label);
    the first test image of the label where the judge gets none right (a barely trained judge, in --quick)."""
    te = torch.tensor(test_idx)
    correct = judge.predict(data.images[te]) == data.labels[te]
    a, b = FIGURE6_LABELS if data.num_labels > max(FIGURE6_LABELS) else (0, data.num_labels - 1)
    pick = []
    for k in (a, b):
        of_label = data.labels[te] == k
        judged_right = of_label & correct
        pick.append(int(te[judged_right if judged_right.any() else of_label][0]))
    return pick[0], pick[1]


@torch.no_grad()
def figure6_rows(runs: dict[str, FamilyRun], data: ImageSet, i: int, j: int, judge: Any) -> list[dict[str, Any]]:
    rows = []
    for name, family, method in FIGURE6_ROWS:
        if family not in runs:
            continue
        model = runs[family].model
        codes = model.code(data.images[[i, j]])  # (2, d)
        frames = model.decode(interpolate(codes[0], codes[1], SPS_FRAMES, method))  # (T, C, H, W)
        rows.append({"name": name, "method": method, "frames": frames, "judged": judge.predict(frames).tolist()})
    return rows


def run_dataset(cfg: QualityConfig, spec: str, out: Path, on_progress: ProgressFn) -> dict[str, Any]:
    data = load_dataset(spec)
    if cfg.per_class is not None:
        data = first_per_class(data, cfg.per_class)
    train_idx, test_idx = split_indices(data.labels, train_config(cfg, "atnl", spec).test_fraction, cfg.seed)
    judge, judge_acc = get_judge(data, train_idx, test_idx, seed=cfg.seed)
    runs: dict[str, FamilyRun] = {}
    for family in cfg.families:
        run, run_tr, run_te = run_family(cfg, family, data, judge, on_progress)
        assert (run_tr, run_te) == (train_idx, test_idx), "every family must train on the same split"
        runs[family] = run
    seeded_probes(cfg, runs, data, on_progress)

    slug = spec.replace(":", "_").replace("/", "_")
    rng = np.random.default_rng(cfg.seed)
    keep = np.sort(rng.choice(len(test_idx), min(cfg.tsne_points, len(test_idx)), replace=False))
    y_keep = data.labels[test_idx].numpy()[keep]
    figures: dict[str, str] = {}
    done, total = 0, 2 * len(runs)
    for dims in (2, 3):
        emb = {}
        for family, run in runs.items():
            assert run.codes is not None
            emb[DISPLAY[family]] = (tsne(run.codes[keep], dims, cfg.seed, cfg.tsne_iter), y_keep)
            done += 1
            on_progress(f"{spec}: t-SNE", done, total)
        name = f"tsne{dims}d_{slug}.png"
        tsne_grid(emb, data.label_names, dims, out / name, f"t-SNE ({dims}-D) of {len(keep)} test latents, {spec}")
        figures[f"tsne_{dims}d"] = name

    i, j = figure6_pair(data, test_idx, judge)
    rows = figure6_rows(runs, data, i, j, judge)
    name = f"figure6_{slug}.png"
    la, lb = data.label_names[int(data.labels[i])], data.label_names[int(data.labels[j])]
    path_figure([(r["name"], r["frames"], r["judged"]) for r in rows], data.label_names, out / name,
                f"{spec}: test image {i} ('{la}') to {j} ('{lb}'), {SPS_FRAMES} frames; judged label under each")  # fmt: skip
    figures["figure6"] = name
    return {
        "dataset": spec,
        "n_images": len(data),
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "judge_test_acc": judge_acc,
        "families": {f: r.metrics for f, r in runs.items()},
        "figure6": {"source_indices": [i, j], "rows": [{k: v for k, v in r.items() if k != "frames"} for r in rows]},
        "figures": figures,
    }


def _path(m: dict[str, Any], method: str) -> list[str]:
    p = m.get(f"path_{method}")
    return [f"{p['sps']:.3f}", f"{p['coverage']:.3f}", f"{p['monotonicity']:.3f}"] if p else ["n/a"] * 3


def render(results: list[dict[str, Any]], cfg: QualityConfig) -> str:
    parts = [
        "Every family is trained with the TrainConfig defaults on the same seeded split and backbone"
        + (f" (epochs overridden to {cfg.epochs})" if cfg.epochs else "")
        + ". Latent accuracy: linear probe (logistic regression, C = 10, on the unit latents) and 5-NN cosine, "
        "train split -> test split. SPS: share of seeded test pairs (a < b, b - a >= 2, both judged correctly) whose "
        f"{SPS_FRAMES} decoded frames the independent judge labels non-decreasing from a to b through every label between; "
        f"{cfg.pairs} pairs. Baselines decode Euclidean codes, so only lerp applies to them; ATNL* = ATNL with lerp.",
    ]
    for r in results:
        fam = r["families"]
        rows = []
        for f, m in fam.items():
            acc = [f"{100 * m['linear_probe_acc']:.2f}", f"{100 * m['knn5_cosine_acc']:.2f}", f"{m['recon_bce']:.4f}"]
            rows.append([DISPLAY[f], *acc, *_path(m, "slerp"), *_path(m, "lerp"), f"{m['train_seconds']:.0f}"])
        parts.append(
            f"## {r['dataset']} ({r['n_train']} train / {r['n_test']} test; judge test accuracy {100 * r['judge_test_acc']:.2f}%)"
        )
        parts.append(md_table(["family", "linear probe %", "5-NN cos %", "recon BCE", "SPS slerp", "coverage slerp",
                               "monotone slerp", "SPS lerp", "coverage lerp", "monotone lerp", "train s"], rows))  # fmt: skip
        seeded = [[DISPLAY[f], " / ".join(f"{100 * p:.2f}" for p in m["linear_probe_seeds"]),
                   f"{100 * m['linear_probe_mean']:.2f} ± {100 * m['linear_probe_std']:.2f}"]
                  for f, m in fam.items() if "linear_probe_seeds" in m]  # fmt: skip
        parts.append(
            f"### Linear probe over seeds\n\nThe families within {100 * PROBE_TIE:.0f} point of the best probe, retrained "
            f"with seeds {cfg.seed} to {cfg.seed + cfg.probe_seeds - 1} (each seed its own split and weights; the first "
            "is the run above):\n\n" + md_table(["family", "probe % per seed", "mean ± std"], seeded)
        )
        f6 = []
        for row in r["figure6"]["rows"]:
            m = fam["atnl" if row["name"].startswith("ATNL") else row["name"].lower()]
            p = m[f"path_{row['method']}"]
            judged = " ".join(str(k) for k in row["judged"])
            f6.append([row["name"], row["method"], f"{p['sps']:.3f}", f"{p['coverage']:.3f}", f"`{judged}`"])
        parts.append(
            "### Figure 6, measured\n\n"
            + md_table(["row", "interpolation", "SPS", "coverage", "judged labels of the replica path"], f6)
        )
        parts.append(
            f"![Figure 6 replica]({r['figures']['figure6']})\n\n![t-SNE 2-D]({r['figures']['tsne_2d']})\n\n"
            f"![t-SNE 3-D]({r['figures']['tsne_3d']})"
        )
        parts.append("### Targets (issue 4)\n\n" + "\n".join(f"- {line}" for line in targets(fam)))
    parts.append(
        "## Paper Table 1 (linear probe %, for reference; full MNIST and Multi-PIE, not our data)\n\n"
        + md_table(["data", *PAPER_TABLE1["MNIST (full)"]], [[k, *v.values()] for k, v in PAPER_TABLE1.items()])
    )
    return "\n\n".join(parts)


def probe_score(m: dict[str, Any]) -> float:
    """A family's probe accuracy: the mean over seeds where it has several, else its one run's."""
    return float(m.get("linear_probe_mean", m["linear_probe_acc"]))


def targets(fam: dict[str, Any]) -> list[str]:
    """Plain-language pass/fail of issue 4's quality bar, computed from the numbers above."""
    if "atnl" not in fam:
        return ["ATNL not run"]
    best = max(fam, key=lambda f: probe_score(fam[f]))
    a = fam["atnl"]["path_slerp"]
    lines = [
        f"highest linear probe (the mean over seeds where a family has several): {DISPLAY[best]} "
        f"({100 * probe_score(fam[best]):.2f}%)"
        + (" - ATNL: met" if best == "atnl" else f" - ATNL {100 * probe_score(fam['atnl']):.2f}%: not met"),
        f"ATNL slerp SPS {a['sps']:.3f} (target >= {TARGET_SPS}): {'met' if a['sps'] >= TARGET_SPS else 'not met'}",
        f"ATNL slerp coverage {a['coverage']:.3f} (target >= {TARGET_COVERAGE}): "
        + ("met" if a["coverage"] >= TARGET_COVERAGE else "not met"),
    ]
    others = {DISPLAY[f]: fam[f]["path_lerp"]["sps"] for f in ("ae", "vae", "aae", "acai") if f in fam}
    others["ATNL*"] = fam["atnl"]["path_lerp"]["sps"]
    bar = FAR_BELOW * a["sps"]
    lines.append(
        f"far below ATNL (SPS < {FAR_BELOW} x {a['sps']:.3f} = {bar:.3f}): "
        + ", ".join(f"{k} {v:.3f} {'met' if v < bar else 'not met'}" for k, v in others.items())
    )
    if others["ATNL*"] >= bar:
        lines.append(
            "why ATNL* is not far below here: the sector decoder reads only the direction of the order axes, and a lerp "
            "chord between two latents projects onto the same arc as their slerp (at another speed), so lerp paths pass "
            "the same labels; the paper's ATNL* failed because its decoder met codes off the sphere"
        )
    return lines


def run_quality(cfg: QualityConfig, out: Path, command: str, on_progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Run the benchmark and write ``out/quality.md``, ``quality.json`` and the PNG figures."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(cfg.threads):
        results = [run_dataset(cfg, spec, out, on_progress) for spec in cfg.datasets]
        hw = hardware(str(resolve_device(cfg.device)))
    seconds = time.monotonic() - start
    body = render(results, cfg) + f"\n\nWall time: {seconds / 60:.1f} min.\n"
    data = {"config": asdict(cfg), "seconds": round(seconds, 1), "results": results}
    write_report(out, "quality", "Latent quality and semantic paths (paper Table 1, Figures 5-6)", command, hw, body, data)
    return data
