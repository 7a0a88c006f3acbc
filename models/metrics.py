"""Metrics of docs/API.md §8.1 and docs/METHOD.md: latent accuracy (linear probe, 5-NN cosine),
reconstruction (BCE and identity), the semantic path score (SPS) judged by an
independent CNN, and the quality of hallucinations (judge agreement, diversity,
Fréchet distance on the judge's features)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from models.augment import jitter
from models.data import ImageSet
from models.errors import InputError
from models.geometry import latent_path
from models.hallucination import default_strategy, hallucinate
from models.judge import JudgeCNN, get_judge
from models.networks import SemanticAutoencoder

PROBE_C = 10.0
"""Inverse L2 strength of the linear probe: light, as a probe should measure the latent, not the prior."""
SPS_FRAMES = 14
"""Frames per path, endpoints included."""
SPS_PAIRS = 500
"""Seeded test pairs per score."""
SPS_MIN_GAP = 2
"""Smallest label gap b - a of a scored pair (there must be a label between)."""
HALLUCINATION_SHOTS = 5
"""k real images a label in the few-shot set that hallucination quality is measured from."""
HALLUCINATION_PER_CLASS = 50
"""Images a label made by hallucination, and by jitter for the comparison."""


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def latent_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Linear probe and 5-NN cosine accuracy of frozen latents, train split -> test split.

    The probe is multinomial logistic regression on the unit latents as they are
    (every family's ``encode`` gives unit vectors), C = PROBE_C. Standardising
    them first would move the origin that angular latents are measured from."""
    probe = LogisticRegression(C=PROBE_C, max_iter=5000)
    probe.fit(z_train, y_train)
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(z_train, y_train)
    return {
        "linear_probe_acc": float(probe.score(z_test, y_test)),
        "knn5_cosine_acc": float(knn.score(z_test, y_test)),
    }


@torch.no_grad()
def reconstruction_error(model: SemanticAutoencoder, x: torch.Tensor) -> dict[str, float]:
    """Held-out reconstruction of x (N, C, H, W) in [0, 1]: per-pixel mean BCE and MSE, and
    identity, the share of images whose reconstruction's nearest image of x (pixel L2)
    is its own original. A decoder that draws one prototype per label scores about 1/N
    a label on identity however low its BCE."""
    rec = batched(lambda b: model.decode(model.code(b)), x)
    nearest = torch.cdist(rec.flatten(1), x.flatten(1)).argmin(1)  # (N,)
    return {
        "recon_bce": float(F.binary_cross_entropy(rec.clamp(1e-6, 1 - 1e-6), x).item()),
        "recon_mse": float(F.mse_loss(rec, x).item()),
        "recon_identity": float((nearest == torch.arange(len(x))).float().mean().item()),
    }


def path_passes(path: list[int], a: int, b: int) -> tuple[bool, float, bool]:
    """(passes, intermediate coverage, monotone) of judged labels ``path`` from a to b (a < b)."""
    monotone = all(p <= q for p, q in itertools.pairwise(path))
    between = set(range(a + 1, b))
    coverage = len(between & set(path)) / len(between) if between else 1.0
    passes = monotone and path[0] == a and path[-1] == b and coverage == 1.0
    return passes, coverage, monotone


def sample_pairs(
    labels: torch.Tensor, eligible: torch.Tensor, num_pairs: int, seed: int, min_gap: int = SPS_MIN_GAP
) -> list[tuple[int, int]]:
    """Seeded (i, j) index pairs among ``eligible`` items with labels[j] - labels[i] >= min_gap."""
    rng = np.random.default_rng(seed)
    idx = eligible.nonzero().squeeze(1).numpy()
    y = labels.numpy()
    pairs: list[tuple[int, int]] = []
    for _ in range(num_pairs * 1000):
        if len(pairs) == num_pairs:
            break
        i, j = rng.choice(idx, 2, replace=False)
        if y[i] > y[j]:
            i, j = j, i
        if y[j] - y[i] >= min_gap:
            pairs.append((int(i), int(j)))
    if len(pairs) < num_pairs:
        raise InputError(f"only {len(pairs)} pairs with a label gap >= {min_gap} among the eligible test images")
    return pairs


@torch.no_grad()
def semantic_path_score(
    model: SemanticAutoencoder,
    judge: JudgeCNN,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str = "slerp",
    num_pairs: int = SPS_PAIRS,
    frames: int = SPS_FRAMES,
    seed: int = 0,
) -> dict[str, Any]:
    """SPS over seeded pairs of test images (x (N, C, H, W), y (N,)) that the judge labels correctly.

    Returns sps, coverage and monotonicity (means), the pair count and a few example paths."""
    correct = judge.predict(x) == y
    pairs = sample_pairs(y, correct, num_pairs, seed)
    codes = batched(model.code, x)
    paths = torch.stack([latent_path(codes[i], codes[j], frames, method, model.cfg.spherical) for i, j in pairs])  # (P, T, d)
    decoded = batched(model.decode, paths.reshape(-1, paths.shape[-1]))
    judged = judge.predict(decoded).reshape(len(pairs), frames).tolist()
    scores = [path_passes(p, int(y[i]), int(y[j])) for p, (i, j) in zip(judged, pairs, strict=True)]
    return {
        "sps": float(np.mean([s[0] for s in scores])),
        "coverage": float(np.mean([s[1] for s in scores])),
        "monotonicity": float(np.mean([s[2] for s in scores])),
        "pairs": len(pairs),
        "examples": [{"a": int(y[i]), "b": int(y[j]), "judged": p} for p, (i, j) in list(zip(judged, pairs, strict=True))[:5]],
    }


@torch.no_grad()
def latent_metrics(
    model: SemanticAutoencoder, data: ImageSet, train_indices: list[int], test_indices: list[int]
) -> dict[str, float]:
    """The cheap metrics: latent accuracy and reconstruction on the test split."""
    x_tr, y_tr = data.images[train_indices], data.labels[train_indices]
    x_te, y_te = data.images[test_indices], data.labels[test_indices]
    z_tr, z_te = batched(model.encode, x_tr).numpy(), batched(model.encode, x_te).numpy()
    return {**latent_accuracy(z_tr, y_tr.numpy(), z_te, y_te.numpy()), **reconstruction_error(model, x_te)}


def evaluate(
    model: SemanticAutoencoder,
    data: ImageSet,
    train_indices: list[int],
    test_indices: list[int],
    num_pairs: int = SPS_PAIRS,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """All docs/API.md §8.1 metrics of one model on the test split (the judge kept under ``cache_dir``).

    SPS uses slerp for spherical models and lerp for all (the baselines' and ATNL*'s way);
    ``hallucination`` is ``hallucination_quality`` with the model's ``default_strategy``."""
    model = model.cpu().eval()
    out: dict[str, Any] = latent_metrics(model, data, train_indices, test_indices)
    judge, judge_acc = get_judge(data, train_indices, test_indices, seed=seed, cache_dir=cache_dir)
    out["judge_acc"] = judge_acc
    x_te, y_te = data.images[test_indices], data.labels[test_indices]
    methods = ["slerp", "lerp"] if model.cfg.spherical else ["lerp"]
    for method in methods:
        out[f"path_{method}"] = semantic_path_score(model, judge, x_te, y_te, method, num_pairs, seed=seed)
    primary = out[f"path_{methods[0]}"]
    out.update(sps=primary["sps"], coverage=primary["coverage"], monotonicity=primary["monotonicity"], sps_method=methods[0])
    strategy = default_strategy(model)
    out["hallucination"] = hallucination_quality(model, judge, data, train_indices, test_indices, strategy, seed=seed)
    return out


def few_shot_indices(data: ImageSet, train_indices: list[int], shots: int, seed: int) -> list[int]:
    """``shots`` seeded train-split indices of each label (all of a label's, where it has fewer), label by label."""
    rng = np.random.default_rng(seed)
    train = np.asarray(train_indices)
    train_y = data.labels[train].numpy()
    picks: list[int] = []
    for k in range(data.num_labels):
        pool = train[train_y == k]
        picks += [int(i) for i in rng.choice(pool, min(shots, len(pool)), replace=False)]
    return picks


def within_label_diversity(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over labels of the mean pixel L2 distance between two distinct images of x (N, C, H, W) of that label."""
    per_label = []
    for k in y.unique():
        flat = x[y == k].flatten(1)
        if len(flat) > 1:
            per_label.append(float(torch.cdist(flat, flat).sum() / (len(flat) * (len(flat) - 1))))
    return float(np.mean(per_label)) if per_label else 0.0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula, ||μ_a - μ_b||² + tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^½), of feature sets (N, F) and (M, F)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eye = np.eye(len(cov_a)) * 1e-6  # ReLU features with no variance make Σ singular, as FID's code guards
    root, _ = linalg.sqrtm((cov_a + eye) @ (cov_b + eye), disp=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


@torch.no_grad()
def hallucination_quality(
    model: SemanticAutoencoder,
    judge: JudgeCNN,
    data: ImageSet,
    train_indices: list[int],
    test_indices: list[int],
    strategy: str,
    shots: int = HALLUCINATION_SHOTS,
    per_class: int = HALLUCINATION_PER_CLASS,
    seed: int = 0,
) -> dict[str, Any]:
    """How new real-looking digits the hallucinations of a k-shot set are.

    The k-shot set is ``shots`` seeded train-split images a label; from it ``per_class``
    images a label are hallucinated (``strategy``) and, for comparison, as many jitters
    of the real images are made. Against the test split: the judge's agreement with the
    hallucinations' labels, their within-label pixel diversity as a ratio to the test
    images' own, and the Fréchet distance of the judge's penultimate features to the
    test images' (lower is closer), beside the same distance for the jittered images; for
    a model with a self-check (``self_check``), what it replaced and dropped, and the
    judge's agreement with the same first draws unchecked (``filter="none"``)."""
    picks = few_shot_indices(data, train_indices, shots, seed)
    x_few, y_few = data.images[picks], data.labels[picks]
    model = model.cpu().eval()
    made = hallucinate(model, x_few, y_few, data.num_labels, per_class=per_class, strategy=strategy, seed=seed)
    check: dict[str, Any] = {"checked": made.checked, "replaced": made.replaced, "dropped": made.dropped}
    samples = made.samples
    if made.checked:  # the same first draws, kept as they came: what the self-check changed
        raw = hallucinate(model, x_few, y_few, data.num_labels, per_class=per_class, strategy=strategy, seed=seed, filter="none")
        y_raw = torch.tensor([s.label for s in raw.samples])
        check["unchecked_judge_agreement"] = float(
            (judge.predict(torch.stack([s.image for s in raw.samples])) == y_raw).float().mean()
        )
        samples = samples or raw.samples  # a check that left nothing: the rest measured on what it refused
    x_hal = torch.stack([s.image for s in samples])
    y_hal = torch.tensor([s.label for s in samples])
    g = torch.Generator().manual_seed(seed)
    pools = [(y_few == k).nonzero().squeeze(1) for k in y_few.unique()]
    repeat = torch.cat([pool.repeat(-(-per_class // len(pool)))[:per_class] for pool in pools])  # each image in turn
    x_jit, y_jit = jitter(x_few[repeat], g, degrees=data.label_safe_rotation), y_few[repeat]
    x_te, y_te = data.images[test_indices], data.labels[test_indices]
    real_div = within_label_diversity(x_te, y_te)
    f_te = judge.features(x_te).numpy()
    return {
        "strategy": strategy,
        "shots": shots,
        "per_class": per_class,
        "judge_agreement": float((judge.predict(x_hal) == y_hal).float().mean()) if made.samples else 0.0,
        "diversity_ratio": within_label_diversity(x_hal, y_hal) / real_div,
        "frechet": frechet_distance(judge.features(x_hal).numpy(), f_te),
        "jittered_judge_agreement": float((judge.predict(x_jit) == y_jit).float().mean()),
        "jittered_diversity_ratio": within_label_diversity(x_jit, y_jit) / real_div,
        "jittered_frechet": frechet_distance(judge.features(x_jit).numpy(), f_te),
        "self_check": check,
    }
