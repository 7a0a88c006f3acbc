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

The labels given are the truth: a model with an order circle draws every example at its
given label's place on the circle, lists the examples it reads otherwise, and reads back
what it made (the self-check, ``filter``); see ``hallucinate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from models.augment import jitter
from models.errors import InputError
from models.geometry import default_method, latent_path, normalize, slerp
from models.networks import SemanticAutoencoder
from models.order_circle import place_in_sectors

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
Filter = Literal["model", "none"]
FILTERS: tuple[Filter, ...] = ("model", "none")
"""``model``: images the model (order head and label reader) doubts are drawn again, the
best-read draw kept, and those still read as another label left out; ``none``: every image
kept, with the model's reading beside it."""
CHECK_ROUNDS = 16
"""Draws the self-check makes for an image it doubts (below CHECK_CONFIDENCE) before it keeps the best one."""
CHECK_BUDGET = 2
"""Redraws of one request at most, as a multiple of the images it asks for, and at most
CHECK_MAX_REDRAWS: what bounds the self-check's work when a model doubts everything."""
CHECK_MAX_REDRAWS = 1000
"""Redraws of one request at most, however many images it asks for (2,000 images of a model
that doubts them all: 2.6 s unchecked, 3.9 s checked, on one CPU thread)."""
CHECK_JITTERS = 1
"""Jittered copies of each made image the label reader also reads in the self-check."""
CHECK_JITTER = 0.06
"""Shift (share of the half-width) and rescaling (1 ± this) of those copies."""
CHECK_CONFIDENCE = 0.99
"""Probability of its label (``check_labels``: the lower of the order head's and the label
reader's) from which the self-check trusts an image without drawing it again. The head reads a
blurred half-8 between a 7 and a 9 as an 8 at 0.7-0.9, a clean one at 1.00; an image drawn again
is replaced only by a better-read one, so a weaker model, sure of fewer images, still answers."""


def default_strategy(model: SemanticAutoencoder) -> Strategy:
    """The strategy a request that names none gets, and that the benches measure a model with:
    ``DEFAULT_STRATEGY`` where the model has an order circle (atnl), else ``both``, the
    slerp/lerp strategy every family can serve (the Euclidean baselines)."""
    return DEFAULT_STRATEGY if model.has_order_circle else "both"


@dataclass
class HallucinatedSample:
    image: torch.Tensor
    """(C, H, W) in [0, 1]."""
    label: int
    sources: tuple[int, int]
    """Indices into the input set of the two endpoints."""
    omega: float
    read: int | None = None
    """The label the self-check reads in the image (``check_labels``); None for models without an order circle."""


@dataclass(frozen=True)
class Disagreement:
    """An example the model reads as another label than the one it was given."""

    index: int
    """Its index in the input set."""
    given: int
    read: int
    confidence: float
    """The model's probability of ``read``, in [0, 1]."""


@dataclass
class HallucinationResult:
    """What ``hallucinate`` made, and what the model's own reading said of it."""

    samples: list[HallucinatedSample]
    disagreements: list[Disagreement]
    checked: bool
    """Whether the model read the images back (only models with an order circle can)."""
    replaced: int = 0
    """Images swapped for a draw the model reads better as their label (filter ``model``)."""
    dropped: int = 0
    """Images left out because even the best of CHECK_ROUNDS draws was read as another label (filter ``model``)."""

    @property
    def flagged(self) -> int:
        """Samples kept though the model reads another label (filter ``none``)."""
        return sum(s.read is not None and s.read != s.label for s in self.samples)


def labels_note(strategy: str, checked: bool) -> str:
    """How the labels of a hallucinated set were made and how far to trust them, in a sentence or two."""
    how = STRATEGY_NOTES.get(strategy, strategy)
    if checked:
        return (
            f"{how}. Each image carries the label it was drawn for: every example was first placed on its given "
            "label's sector of the order circle (its style kept), and the model's order head and label reader read "
            "each image back (self_check)."
        )
    return (
        f"{how}. This model has no order circle: a label is that of the examples a path joins, or the one between "
        "them, and nothing reads the images back, so a path's middle may show a neighbouring label. Trust these "
        "labels as far as the model's morphs (its path score in the benchmarks)."
    )


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


DrawKind = Literal["same", "ordinal", "restyle"]


class Draw(NamedTuple):
    """One image to make: from sources i and j at ω, labelled ``label``."""

    i: int
    j: int
    omega: float
    label: int
    kind: DrawKind = "same"
    """``restyle``: i's order angle with its style moved towards j's; else a path from i to j."""

    @property
    def restyle(self) -> bool:
        return self.kind == "restyle"


class Pools(NamedTuple):
    """Indices of the examples of each label, and of all of them."""

    by_label: list[torch.Tensor]
    everyone: torch.Tensor

    @classmethod
    def of(cls, labels: torch.Tensor, num_labels: int) -> Pools:
        return cls([(labels == k).nonzero().squeeze(1) for k in range(num_labels)], torch.arange(len(labels)))


def restyle_draw(k: int, pools: Pools, g: torch.Generator) -> Draw:
    """A label-k example restyled towards any other example."""
    i = _pick(pools.by_label[k], g)
    donors = pools.everyone[pools.everyone != i]
    return Draw(i, _pick(donors, g) if len(donors) else i, _uniform(RESTYLE_OMEGA, g), k, "restyle")


def ordinal_draw(k: int, pools: Pools, g: torch.Generator) -> Draw:
    """The middle of a path from a label k-1 example to a label k+1 one."""
    i, j = _pick(pools.by_label[k - 1], g), _pick(pools.by_label[k + 1], g)
    return Draw(i, j, _uniform(ORDINAL_OMEGA, g), k, "ordinal")


def same_draw(k: int, pools: Pools, g: torch.Generator) -> Draw:
    """A point on a path between two label-k examples (one, if there is only one)."""
    i = _pick(pools.by_label[k], g)
    others = pools.by_label[k][pools.by_label[k] != i]
    return Draw(i, _pick(others, g) if len(others) else i, _uniform(SAME_OMEGA, g), k, "same")


DRAW_MAKERS = {"restyle": restyle_draw, "ordinal": ordinal_draw, "same": same_draw}
"""Each kind of draw, drawn afresh: the self-check redraws a misread image with its draw's kind."""


def plan_draws(labels: torch.Tensor, num_labels: int, counts: list[int], strategy: str, g: torch.Generator) -> list[Draw]:
    """The draws that make ``counts[k]`` images of each label k."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy[:64]!r}", field="strategy")
    pools = Pools.of(labels, num_labels)
    out: list[Draw] = []
    for k, count in enumerate(counts):
        ordinal_ok = 0 < k < num_labels - 1 and len(pools.by_label[k - 1]) > 0 and len(pools.by_label[k + 1]) > 0
        same_ok = len(pools.by_label[k]) > 0
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
        out += [restyle_draw(k, pools, g) for _ in range(n_restyle)]
        out += [ordinal_draw(k, pools, g) for _ in range(n_ord)]
        out += [same_draw(k, pools, g) for _ in range(rest - n_ord)]
    return out


def restyled(code_i: torch.Tensor, code_j: torch.Tensor, omega: float) -> torch.Tensor:
    """(1, d): unit code i's order angle (axes 0, 1) with its style (the other axes)
    slerped towards code j's by ω, at code i's lean off the order circle."""
    lean = code_i[2:].norm()
    style = slerp(normalize(code_i[2:]), normalize(code_j[2:]), [omega]) * lean  # (1, d - 2)
    return torch.cat([code_i[None, :2], style], dim=1)


def draw_codes(codes: torch.Tensor, draws: list[Draw], spherical: bool) -> torch.Tensor:
    """(len(draws), d): the latent each draw decodes, from the examples' (N, d) ``codes``."""
    method = default_method(spherical)
    return torch.cat(
        [
            restyled(codes[j.i], codes[j.j], j.omega)
            if j.restyle
            else latent_path(codes[j.i], codes[j.j], [j.omega], method, spherical)
            for j in draws
        ]
    )


def read_labels(model: SemanticAutoencoder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) the label the model reads in each (N, C, H, W) image and (N, K) its probabilities."""
    probs = model.label_probs(images)
    return probs.argmax(dim=1), probs


def check_labels(model: SemanticAutoencoder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The self-check's reading of (N, C, H, W) made images: ``read_labels``, and with a label
    reader, each label's probability also the lowest the reader gives CHECK_JITTERS small shifts
    and rescalings of the image (seeded). Off the data manifold, classifiers disagree with one
    another at full confidence; a reading that holds under small jitters is one they share."""
    probs = model.label_probs(images)  # (N, K)
    if model.reader is not None:
        g = torch.Generator().manual_seed(0)
        for _ in range(CHECK_JITTERS):  # no rotation: it is the label of some data sets (pose-digits)
            moved = jitter(images, g, degrees=0.0, shift=CHECK_JITTER, scale=CHECK_JITTER)
            probs = torch.minimum(probs, model.reader.probs(moved))
    return probs.argmax(dim=1), probs


def check_request(
    model: SemanticAutoencoder, images: torch.Tensor, labels: torch.Tensor, num_labels: int, strategy: str, filter: str
) -> None:
    """InputError for inputs ``hallucinate`` cannot take."""
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise InputError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_labels):
        raise InputError(f"labels must be in [0, {num_labels})", field="labels")
    if strategy in ("restyle", "mixed") and not model.has_order_circle:
        raise InputError(f"strategy {strategy!r} needs a model with an order circle (family atnl)", field="strategy")
    if filter not in FILTERS:
        raise InputError(f"filter must be one of {list(FILTERS)}, got {filter[:64]!r}", field="filter")


def disagreements_of(model: SemanticAutoencoder, images: torch.Tensor, labels: torch.Tensor) -> list[Disagreement]:
    """The examples (N, C, H, W) the model reads as another label than their ``labels`` (N,)."""
    read, probs = read_labels(model, images)
    return [
        Disagreement(i, int(labels[i]), int(read[i]), float(probs[i, read[i]]))
        for i in range(len(labels))
        if read[i] != labels[i]
    ]


def redraw_doubtful(
    model: SemanticAutoencoder,
    codes: torch.Tensor,
    draws: list[Draw],
    made: torch.Tensor,
    read: torch.Tensor,
    score: torch.Tensor,
    pools: Pools,
    g: torch.Generator,
) -> int:
    """The self-check's redraws, in place: each image whose ``score`` (the reading's probability of
    its label) is below CHECK_CONFIDENCE is drawn again, up to CHECK_ROUNDS times and CHECK_BUDGET
    redraws an image in all, and its slot (``draws``, ``made``, ``read``, ``score``) keeps the
    best-read draw. Returns how many were swapped."""
    replaced, budget = 0, min(CHECK_BUDGET * len(draws), CHECK_MAX_REDRAWS)
    for _ in range(CHECK_ROUNDS):
        doubtful = (score < CHECK_CONFIDENCE).nonzero().squeeze(1).tolist()[:budget]
        if not doubtful:
            break
        budget -= len(doubtful)
        tries = [DRAW_MAKERS[draws[m].kind](draws[m].label, pools, g) for m in doubtful]
        tried = model.decode(draw_codes(codes, tries, model.cfg.spherical))
        tried_read, tried_probs = check_labels(model, tried)
        tried_score = tried_probs.gather(1, torch.tensor([j.label for j in tries])[:, None]).squeeze(1)
        for t, m in enumerate(doubtful):
            if tried_score[t] > score[m]:
                draws[m], made[m], read[m], score[m] = tries[t], tried[t], tried_read[t], tried_score[t]
                replaced += 1
    return replaced


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
    filter: Filter = "model",
) -> HallucinationResult:
    """Make labelled images from ``images`` (N, C, H, W) in [0, 1] with ``labels`` (N,) in [0, K).

    The given labels are the truth: a model with an order circle first turns each
    example's order angle to its label's sector (``place_in_sectors``), style kept, so
    that a misread example still lends its own label; the examples it reads as another
    label are listed (``disagreements``). The model then reads every image made
    (``check_labels``: its order head and label reader). With ``filter="model"`` an image
    it reads as its label with probability below CHECK_CONFIDENCE is drawn again (the same
    kind of draw, fresh sources and ω) up to CHECK_ROUNDS times, and the slot keeps the
    best-read of its draws (``replaced`` counts the swaps); a slot whose best is still
    read as another label is left out (``dropped``). With ``filter="none"`` every image
    is kept and its ``read`` says what the model sees.
    Spherical models slerp their unit latents; Euclidean baselines lerp their codes and,
    with no order circle, nothing reads their images back. Same ``seed``, same inputs ->
    the same samples."""
    check_request(model, images, labels, num_labels, strategy, filter)
    g = torch.Generator().manual_seed(seed)
    makeable = makeable_labels(labels, num_labels, strategy)
    counts = [0] * num_labels
    for k, count in zip(makeable, quotas(len(makeable), per_class, n), strict=True):
        counts[k] = count
    draws = plan_draws(labels, num_labels, counts, strategy, g)
    codes = model.code(images)  # (N, d)
    spherical = model.cfg.spherical
    if not model.has_order_circle:
        decoded = model.decode(draw_codes(codes, draws, spherical)) if draws else images[:0]
        samples = [HallucinatedSample(img, j.label, (j.i, j.j), j.omega) for img, j in zip(decoded, draws, strict=True)]
        return HallucinationResult(samples, [], checked=False)
    disagreements = disagreements_of(model, images, labels)
    codes = place_in_sectors(codes, labels, model.cfg.num_labels, model.cfg.circle_span)
    made = model.decode(draw_codes(codes, draws, spherical)) if draws else images[:0]  # (M, C, H, W)
    read, probs = check_labels(model, made)  # (M,), (M, K)
    wanted = torch.tensor([j.label for j in draws], dtype=torch.long)
    score = probs.gather(1, wanted[:, None]).squeeze(1)  # (M,) the reading's probability of the label wanted
    replaced = 0
    if filter == "model":
        replaced = redraw_doubtful(model, codes, draws, made, read, score, Pools.of(labels, num_labels), g)
    keep = [m for m in range(len(draws)) if filter == "none" or read[m] == wanted[m]]
    samples = [HallucinatedSample(made[m], draws[m].label, (draws[m].i, draws[m].j), draws[m].omega, int(read[m])) for m in keep]
    return HallucinationResult(samples, disagreements, checked=True, replaced=replaced, dropped=len(draws) - len(keep))
