"""The quality bar (docs/METHOD.md), computed from a quality-bench data set's numbers.

Each line names the measured value, the bar, and whether it is met and by how
much. The bar is on mnist-5k unless a line names pose-digits; ATNL's linear
probe is compared with VAE-TL's on both.
"""

from __future__ import annotations

from typing import Any

TARGET_DATASET = "mnist-5k"
"""The data set the targets are measured on, unless a target names another."""
POSE_DATASET = "pose-digits"
TARGET_RECON_RATIO = 1.2
"""ATNL's held-out reconstruction BCE at most this multiple of the plain AE's (same backbone)."""
TARGET_IDENTITY = 0.8
"""Reconstruction identity: share of test images whose reconstruction's nearest test image is its original."""
TARGET_AGREEMENT = 0.97
"""The judge's agreement with the labels of ATNL's hallucinations."""
TARGET_DIVERSITY = 0.8
"""Within-label pixel diversity of ATNL's hallucinations, as a ratio to the real test images' own."""
TARGET_SPS, TARGET_COVERAGE = 0.95, 0.98
"""ATNL slerp SPS and coverage on mnist-5k, for every seed (the lowest counts)."""
TARGET_POSE_SPS = 0.9
"""ATNL slerp SPS on pose-digits (the bench's seed)."""
COLOUR_DATASET = "pose-photos"
"""The colour data set of real photographs (models.photo_sets), the bar of one's own data."""
COLOUR_SPS, COLOUR_COVERAGE, COLOUR_AGREEMENT, COLOUR_SECONDS = 0.9, 0.95, 0.95, 300.0
"""On pose-photos with the default recipe: ATNL slerp SPS and coverage, hallucination judge agreement,
and training seconds at most (5 minutes on the 2-core CPU)."""
FAR_BELOW = 0.5
"""An earlier bar's "far below ATNL": an SPS under this share of ATNL's slerp SPS. Retired as a target by
the current bar; it only says which case the ATNL* explanation is in."""


def probe_score(m: dict[str, Any]) -> float:
    """A family's probe accuracy: the mean over seeds where it has several, else its one run's."""
    return float(m.get("linear_probe_mean", m["linear_probe_acc"]))


def verdict(value: float, bar: float, at_least: bool, unit: str = "", digits: int = 3) -> str:
    """'met (by X)' or 'not met (short by X)': how far ``value`` is on the right or wrong side of ``bar``."""
    gap = value - bar if at_least else bar - value
    return f"met (by {gap:.{digits}f}{unit})" if gap >= 0 else f"not met (short by {-gap:.{digits}f}{unit})"


def seeds_text(m: dict[str, Any], key: str) -> tuple[str, float]:
    """The per-seed values of ``key`` of a family's slerp paths as 's0 / s1 / ...' and their lowest."""
    seeds = m.get("path_slerp_seeds") or [{"seed": None, key: m["path_slerp"][key]}]
    values = [s[key] for s in seeds]
    return " / ".join(f"{v:.3f}" for v in values), min(values)


def probe_target(fam: dict[str, Any]) -> str:
    if "vae-tl" not in fam:
        return "ATNL linear probe >= VAE-TL's: VAE-TL not run"
    a, v = probe_score(fam["atnl"]), probe_score(fam["vae-tl"])
    n = len(fam["atnl"].get("linear_probe_seeds", [0]))
    return (
        f"ATNL linear probe, mean over {n} seed(s), {100 * a:.2f}% against VAE-TL's {100 * v:.2f}% (target >= VAE-TL's): "
        + verdict(100 * a, 100 * v, at_least=True, unit=" points", digits=2)
    )


def mnist_targets(fam: dict[str, Any]) -> list[str]:
    a = fam["atnl"]
    lines = []
    if "ae" in fam:
        ratio = a["recon_bce"] / fam["ae"]["recon_bce"]
        lines.append(
            f"ATNL held-out reconstruction BCE {a['recon_bce']:.4f} = {ratio:.2f}x the AE's {fam['ae']['recon_bce']:.4f} "
            f"(target <= {TARGET_RECON_RATIO}x): " + verdict(ratio, TARGET_RECON_RATIO, at_least=False, unit="x", digits=2)
        )
    else:
        lines.append(
            f"ATNL held-out reconstruction BCE {a['recon_bce']:.4f} (target <= {TARGET_RECON_RATIO}x the AE's): AE not run"
        )
    ae_identity = f"; AE {fam['ae']['recon_identity']:.3f}" if "ae" in fam else ""
    lines.append(
        f"ATNL reconstruction identity {a['recon_identity']:.3f} (target >= {TARGET_IDENTITY}{ae_identity}): "
        + verdict(a["recon_identity"], TARGET_IDENTITY, at_least=True)
    )
    h = a["hallucination"]
    made = f"ATNL hallucinations ({h['strategy']}, k = {h['shots']}, {h['per_class']} a label)"
    lines += [
        f"{made}: judge agreement {h['judge_agreement']:.3f} (target >= {TARGET_AGREEMENT}): "
        + verdict(h["judge_agreement"], TARGET_AGREEMENT, at_least=True),
        f"{made}: diversity ratio {h['diversity_ratio']:.3f} (target >= {TARGET_DIVERSITY}): "
        + verdict(h["diversity_ratio"], TARGET_DIVERSITY, at_least=True),
        f"{made}: Fréchet distance to the test images {h['frechet']:.2f} (target <= jittered real k-shot images' "
        f"{h['jittered_frechet']:.2f}): " + verdict(h["frechet"], h["jittered_frechet"], at_least=False, digits=2),
    ]
    for key, bar, name in (("sps", TARGET_SPS, "SPS"), ("coverage", TARGET_COVERAGE, "coverage")):
        per_seed, lowest = seeds_text(a, key)
        lines.append(
            f"ATNL slerp {name} per seed {per_seed}, lowest {lowest:.3f} (target >= {bar} for every seed): "
            + verdict(lowest, bar, at_least=True)
        )
    return lines


def targets(fam: dict[str, Any], dataset: str) -> list[str]:
    """Plain-language met / not met of the quality bar for one data set, with the margin."""
    if "atnl" not in fam:
        return ["ATNL not run"]
    lines = []
    if dataset == TARGET_DATASET:
        lines += mnist_targets(fam)
    elif dataset == POSE_DATASET:
        sps = fam["atnl"]["path_slerp"]["sps"]
        per_seed, lowest = seeds_text(fam["atnl"], "sps")
        lines.append(
            f"ATNL slerp SPS {sps:.3f} (target >= {TARGET_POSE_SPS}): "
            + verdict(sps, TARGET_POSE_SPS, at_least=True)
            + f"; per seed {per_seed}, lowest {lowest:.3f}"
        )
    if dataset in (TARGET_DATASET, POSE_DATASET):
        lines.append(probe_target(fam))
    if dataset == COLOUR_DATASET:
        lines += colour_targets(fam)
    return lines or [f"no target is set on {dataset}"]


def colour_targets(fam: dict[str, Any]) -> list[str]:
    """The bar of a colour data set (pose-photos): paths, reconstruction, hallucination, probe against the AE, time."""
    a, h = fam["atnl"], fam["atnl"]["hallucination"]
    path = a["path_slerp"]
    lines = [
        f"ATNL slerp SPS {path['sps']:.3f} (target >= {COLOUR_SPS}): " + verdict(path["sps"], COLOUR_SPS, at_least=True),
        f"ATNL slerp coverage {path['coverage']:.3f} (target >= {COLOUR_COVERAGE}): "
        + verdict(path["coverage"], COLOUR_COVERAGE, at_least=True),
        f"ATNL reconstruction identity {a['recon_identity']:.3f} (target >= {TARGET_IDENTITY}): "
        + verdict(a["recon_identity"], TARGET_IDENTITY, at_least=True),
        f"ATNL hallucinations ({h['strategy']}, k = {h['shots']}): judge agreement {h['judge_agreement']:.3f} "
        f"(target >= {COLOUR_AGREEMENT}): " + verdict(h["judge_agreement"], COLOUR_AGREEMENT, at_least=True),
        f"ATNL training {a['train_seconds']:.0f} s with the default recipe (target <= {COLOUR_SECONDS:.0f} s): "
        + verdict(a["train_seconds"], COLOUR_SECONDS, at_least=False, unit=" s", digits=0),
    ]
    if "ae" in fam:
        p, q = 100 * probe_score(a), 100 * probe_score(fam["ae"])
        lines.append(
            f"ATNL linear probe {p:.2f}% against the plain AE's {q:.2f}% (target: above the AE's): "
            + verdict(p, q, at_least=True, unit=" points", digits=2)
        )
    return lines


def lerp_notes(fam: dict[str, Any], dataset: str, display: dict[str, str]) -> list[str]:
    """Why ATNL* (lerp) and, on pose-digits, the baselines need not be far below ATNL: explanations, not targets."""
    if "atnl" not in fam:
        return []
    slerp, lerp = fam["atnl"]["path_slerp"]["sps"], fam["atnl"]["path_lerp"]["sps"]
    head = f"ATNL* (ATNL with lerp) SPS {lerp:.3f} against ATNL's slerp {slerp:.3f}. The paper has ATNL* far below ATNL"
    if lerp < FAR_BELOW * slerp:
        lines = [f"{head}, and it is here (under {FAR_BELOW} x ATNL's), as in the paper."]
    else:
        lines = [
            f"{head}; not here, and that is no target: the decoder is defined on the unit sphere and reads the direction "
            "of the order axes, and a lerp chord between two latents projects onto the same arc as their slerp (at another "
            "speed), so lerp paths pass the same labels; the paper's ATNL* failed because its decoder met codes off the sphere."
        ]
    if dataset == POSE_DATASET:
        base = ", ".join(f"{display[f]} {fam[f]['path_lerp']['sps']:.3f}" for f in fam if f != "atnl")
        lines.append(
            f"The baselines' lerp SPS here ({base}) is no target either: "
            "a pose label is a rotation, and a pixel cross-fade between two rotations of a digit partly passes through the "
            "angles between."
        )
    return lines
