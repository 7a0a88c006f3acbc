"""Hallucination: new labelled images from a few-shot set by semantic interpolation.

Strategies (docs/METHOD.md, Hallucination):
- ``same``: slerp between two examples of the same label, label kept;
- ``ordinal``: slerp between an example of label y-1 and one of y+1, near the
  middle of the path (ω in ORDINAL_OMEGA), labelled y; this can fill a label
  that has few or no examples;
- ``both``: half of each label's quota from each, where ``ordinal`` applies;
- ``restyle``: an example of label y keeps its order angle (its label) while
  its style moves towards another example's, of any label (ω in RESTYLE_OMEGA):
  every example lends its style to every label, so k examples a label give
  10·k styles instead of k. Needs a model whose order circle holds the label
  and whose other axes hold the style (atnl);
- ``mixed``: a third of each quota from ``restyle``, the rest as ``both``.
Every sample carries its label, its two source indices and ω.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from models.errors import InputError
from models.geometry import default_method, latent_path, normalize, slerp
from models.networks import SemanticAutoencoder

Strategy = Literal["same", "ordinal", "both", "restyle", "mixed"]
STRATEGIES: tuple[Strategy, ...] = ("same", "ordinal", "both", "restyle", "mixed")
DEFAULT_STRATEGY: Strategy = "restyle"
"""The strategy of models with an order circle (atnl) when a request names none."""
SAME_OMEGA = (0.2, 0.8)
"""ω range of same-label slerps: away from the endpoints, which would be copies."""
ORDINAL_OMEGA = (0.4, 0.6)
"""ω range of y-1 -> y+1 slerps: near the middle, where label y lies."""
RESTYLE_OMEGA = (0.5, 1.0)
"""ω range of restyling: from halfway to the donor's whole style."""
STRATEGY_NOTES = {
    "same": "same-label slerps at ω in [0.2, 0.8]",
    "ordinal": "y-1 -> y+1 slerps near the middle (ω in [0.4, 0.6]) labelled y",
    "both": "half same-label slerps at ω in [0.2, 0.8], half (inner labels) y-1 -> y+1 slerps near the middle labelled y",
    "restyle": "a label-y example's order angle with its style slerped towards another example's (any label) by ω in [0.5, 1]",
    "mixed": "a third restyled (a label-y example's order angle, another example's style by ω in [0.5, 1]), a third "
    "same-label slerps at ω in [0.2, 0.8], a third (inner labels) y-1 -> y+1 slerps near the middle labelled y",
}
"""One line per strategy, for reports."""


def default_strategy(model: SemanticAutoencoder) -> Strategy:
    """The strategy a request that names none gets, and that the benches measure a model with:
    ``DEFAULT_STRATEGY`` where the model has an order circle (atnl), else ``both``, the
    slerp/lerp strategy every family can serve (the Euclidean baselines)."""
    return DEFAULT_STRATEGY if model.cfg.spherical and model.cfg.num_labels >= 2 else "both"


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
        which = "not both" if n is not None else "one of them"
        raise InputError(f"give per_class or n, {which} (exactly one of per_class and n)", field="per_class")
    if per_class is not None:
        if per_class < 1:
            raise InputError(f"per_class must be >= 1, got {per_class}", field="per_class")
        return [per_class] * num_labels
    assert n is not None
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}", field="n")
    return [n // num_labels + (1 if k < n % num_labels else 0) for k in range(num_labels)]


def makeable_labels(labels: torch.Tensor, num_labels: int, strategy: str) -> list[int]:
    """Labels to make images for: those with examples, and (unless ``strategy`` is
    ``same``) those without whose two neighbours both have examples. A request
    with only 0s and 2s gets 0s, 1s and 2s, not an error about the other labels."""
    present = set(labels.tolist())
    out = [k for k in range(num_labels) if k in present or (strategy != "same" and k - 1 in present and k + 1 in present)]
    if not out:
        raise InputError("no examples to hallucinate from", field="files")
    return out


def _uniform(lo_hi: tuple[float, float], g: torch.Generator) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _pick(pool: torch.Tensor, g: torch.Generator) -> int:
    return int(pool[int(torch.randint(len(pool), (), generator=g))])


class Job(NamedTuple):
    """One image to make: from sources i and j at ω, labelled ``label``."""

    i: int
    j: int
    omega: float
    label: int
    restyle: bool = False
    """True: i's order angle with its style moved towards j's; False: a path from i to j."""


def plan(labels: torch.Tensor, num_labels: int, counts: list[int], strategy: str, g: torch.Generator) -> list[Job]:
    """The jobs that make ``counts[k]`` images of each label k."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy[:64]!r}", field="strategy")
    pools = [(labels == k).nonzero().squeeze(1) for k in range(num_labels)]
    everyone = torch.arange(len(labels))
    out: list[Job] = []
    for k, count in enumerate(counts):
        ordinal_ok = 0 < k < num_labels - 1 and len(pools[k - 1]) > 0 and len(pools[k + 1]) > 0
        same_ok = len(pools[k]) > 0
        n_restyle = {"restyle": count, "mixed": count // 3}.get(strategy, 0) if same_ok else 0
        rest = count - n_restyle
        if strategy == "ordinal" or not same_ok:
            n_ord = rest if ordinal_ok else 0
        elif strategy in ("both", "mixed") and ordinal_ok:
            n_ord = rest // 2
        else:
            n_ord = 0
        if n_ord + n_restyle < count and not same_ok:
            raise InputError(f"label {k} has no examples and no examples on both sides to interpolate from", field="labels")
        for _ in range(n_restyle):
            i = _pick(pools[k], g)
            donors = everyone[everyone != i]
            out.append(Job(i, _pick(donors, g) if len(donors) else i, _uniform(RESTYLE_OMEGA, g), k, restyle=True))
        for _ in range(n_ord):
            out.append(Job(_pick(pools[k - 1], g), _pick(pools[k + 1], g), _uniform(ORDINAL_OMEGA, g), k))
        for _ in range(rest - n_ord):
            i = _pick(pools[k], g)
            others = pools[k][pools[k] != i]
            out.append(Job(i, _pick(others, g) if len(others) else i, _uniform(SAME_OMEGA, g), k))
    return out


def restyled(code_i: torch.Tensor, code_j: torch.Tensor, omega: float) -> torch.Tensor:
    """(1, d): unit code i's order angle (axes 0, 1) with its style (the other axes)
    slerped towards code j's by ω, at code i's lean off the order circle."""
    lean = code_i[2:].norm()
    style = slerp(normalize(code_i[2:]), normalize(code_j[2:]), [omega]) * lean  # (1, d - 2)
    return torch.cat([code_i[None, :2], style], dim=1)


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
        raise InputError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_labels):
        raise InputError(f"labels must be in [0, {num_labels})", field="labels")
    if strategy in ("restyle", "mixed") and not (model.cfg.spherical and model.cfg.num_labels >= 2):
        raise InputError(f"strategy {strategy!r} needs a model with an order circle (family atnl)", field="strategy")
    g = torch.Generator().manual_seed(seed)
    makeable = makeable_labels(labels, num_labels, strategy)
    counts = [0] * num_labels
    for k, count in zip(makeable, quotas(len(makeable), per_class, n), strict=True):
        counts[k] = count
    jobs = plan(labels, num_labels, counts, strategy, g)
    codes = model.code(images)  # (N, d)
    spherical = model.cfg.spherical
    method = default_method(spherical)

    def code_of(j: Job) -> torch.Tensor:
        if j.restyle:
            return restyled(codes[j.i], codes[j.j], j.omega)
        return latent_path(codes[j.i], codes[j.j], [j.omega], method, spherical)

    z = [code_of(j) for j in jobs]
    decoded = model.decode(torch.cat(z)) if jobs else images[:0]
    return [HallucinatedSample(img, j.label, (j.i, j.j), j.omega) for img, j in zip(decoded, jobs, strict=True)]
