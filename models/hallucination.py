"""Hallucination: new labelled images from a few-shot set by semantic interpolation.

Strategies (DESIGN §3):
- ``same``: slerp between two examples of the same label, label kept;
- ``ordinal``: slerp between an example of label y-1 and one of y+1, near the
  middle of the path (ω in ORDINAL_OMEGA), labelled y; this can fill a label
  that has few or no examples;
- ``both``: half of each label's quota from each, where ``ordinal`` applies.
Every sample carries its label, its two source indices and ω.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.geometry import interpolate
from models.networks import SemanticAutoencoder

STRATEGIES = ("same", "ordinal", "both")
SAME_OMEGA = (0.2, 0.8)
"""ω range of same-label slerps: away from the endpoints, which would be copies."""
ORDINAL_OMEGA = (0.4, 0.6)
"""ω range of y-1 -> y+1 slerps: near the middle, where label y lies."""


@dataclass
class HallucinatedSample:
    image: torch.Tensor
    """(C, H, W) in [0, 1]."""
    label: int
    sources: tuple[int, int]
    """Indices into the input set of the two endpoints."""
    omega: float


def quotas(num_labels: int, per_class: int | None, n: int | None) -> list[int]:
    """Images to make for each label: ``per_class`` each, or ``n`` split evenly."""
    if (per_class is None) == (n is None):
        raise ValueError("give exactly one of per_class and n")
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        return [per_class] * num_labels
    assert n is not None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [n // num_labels + (1 if k < n % num_labels else 0) for k in range(num_labels)]


def makeable_labels(labels: torch.Tensor, num_labels: int, strategy: str) -> list[int]:
    """Labels to make images for: those with examples, and (unless ``strategy`` is
    ``same``) those without whose two neighbours both have examples. A request
    with only 0s and 2s gets 0s, 1s and 2s, not an error about the other labels."""
    present = set(labels.tolist())
    out = [k for k in range(num_labels) if k in present or (strategy != "same" and k - 1 in present and k + 1 in present)]
    if not out:
        raise ValueError("no examples to hallucinate from")
    return out


def _uniform(lo_hi: tuple[float, float], g: torch.Generator) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _pick(pool: torch.Tensor, g: torch.Generator) -> int:
    return int(pool[int(torch.randint(len(pool), (), generator=g))])


def plan(
    labels: torch.Tensor, num_labels: int, counts: list[int], strategy: str, g: torch.Generator
) -> list[tuple[int, int, float, int]]:
    """(i, j, ω, label) for every image to make."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    pools = [(labels == k).nonzero().squeeze(1) for k in range(num_labels)]
    out: list[tuple[int, int, float, int]] = []
    for k, count in enumerate(counts):
        ordinal_ok = 0 < k < num_labels - 1 and len(pools[k - 1]) > 0 and len(pools[k + 1]) > 0
        same_ok = len(pools[k]) > 0
        if strategy == "ordinal" or not same_ok:
            n_ord = count if ordinal_ok else 0
        elif strategy == "both" and ordinal_ok:
            n_ord = count // 2
        else:
            n_ord = 0
        if n_ord < count and not same_ok:
            raise ValueError(f"label {k} has no examples and no examples on both sides to interpolate from")
        for _ in range(n_ord):
            out.append((_pick(pools[k - 1], g), _pick(pools[k + 1], g), _uniform(ORDINAL_OMEGA, g), k))
        for _ in range(count - n_ord):
            i = _pick(pools[k], g)
            others = pools[k][pools[k] != i]
            j = _pick(others, g) if len(others) else i
            out.append((i, j, _uniform(SAME_OMEGA, g), k))
    return out


@torch.no_grad()
def hallucinate(
    model: SemanticAutoencoder,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    per_class: int | None = None,
    n: int | None = None,
    strategy: str = "both",
    seed: int = 0,
) -> list[HallucinatedSample]:
    """Make labelled images from ``images`` (N, C, H, W) in [0, 1] with ``labels`` (N,) in [0, K).

    Spherical models slerp their unit latents; Euclidean baselines lerp their codes.
    Same ``seed``, same inputs -> the same samples."""
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"labels must be in [0, {num_labels})")
    g = torch.Generator().manual_seed(seed)
    makeable = makeable_labels(labels, num_labels, strategy)
    counts = [0] * num_labels
    for k, count in zip(makeable, quotas(len(makeable), per_class, n), strict=True):
        counts[k] = count
    jobs = plan(labels, num_labels, counts, strategy, g)
    codes = model.code(images)  # (N, d)
    method = "slerp" if model.cfg.spherical else "lerp"
    z = torch.cat([interpolate(codes[i], codes[j], [w], method) for i, j, w, _ in jobs]) if jobs else codes[:0]
    decoded = model.decode(z) if len(z) else images[:0]
    return [HallucinatedSample(img, k, (i, j), w) for img, (i, j, w, k) in zip(decoded, jobs, strict=True)]
