"""Label-free style loss: every label's style directions spread like one distribution.

The decoder of an ordinal-head ATNL model reads the label from the order sector
and everything else from the style direction ŝ (the unit vector of the latent's
d - 2 style axes). If the style directions of 7s and of 1s sit in different
regions, the decoder learns to read the digit from them too, and a path's
middle, which pairs sector k with the style of an endpoint of another label,
decodes as that endpoint's digit. Collapsing style (one point a label) avoids
this but draws every 7 as the same prototype.

This loss keeps style rich but label-free: for each label k present in the
batch, the squared maximum mean discrepancy (unbiased estimate, inverse
multiquadric kernels) between that label's style directions and fresh samples
of the uniform distribution on S^{d-3}:

    L = mean_k MMD²({ŝ_i : y_i = k}, {u_j ~ U(S^{d-3})})

When it is 0 every label's styles cover the whole style sphere alike, so the
decoder is trained on every (sector, style) pair, and a style carries no
label for it to read (the deterministic form of a conditional VAE's prior,
as in a Wasserstein autoencoder's MMD penalty, per label).
"""

from __future__ import annotations

import torch
from torch import nn

from models.errors import InputError
from models.geometry import normalize

KERNEL_SCALES = (0.05, 0.2, 1.0)
"""C of the inverse multiquadric kernels C / (C + ||a - b||²) summed; unit vectors are at most 2 apart.
Several scales, as in WAE-MMD, so both near and far mismatches pull."""


def _imq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d2 = torch.cdist(a, b).pow(2)  # (N, M)
    return sum(c / (c + d2) for c in KERNEL_SCALES)  # type: ignore[return-value]


def mmd2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unbiased squared MMD between samples a (N, F) and b (M, F), N, M >= 2."""
    n, m = len(a), len(b)
    kaa, kbb = _imq(a, a), _imq(b, b)
    off_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    off_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return off_a + off_b - 2 * _imq(a, b).mean()


class LabelFreeStyleLoss(nn.Module):
    def __init__(self, prior_samples: int = 100) -> None:
        super().__init__()
        if prior_samples < 2:
            raise InputError(f"prior_samples must be >= 2, got {prior_samples}")
        self.prior_samples = prior_samples

    def forward(self, style: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``style``: (B, S) style axes (any norm; their directions are compared), S >= 2;
        ``labels``: (B,). Returns a scalar; labels with fewer than 2 items are skipped."""
        if style.dim() != 2 or style.shape[1] < 2 or labels.shape != (style.shape[0],):
            raise InputError(f"expected style (B, S>=2) and labels (B,), got {tuple(style.shape)} and {tuple(labels.shape)}")
        directions = normalize(style)
        prior = normalize(torch.randn(self.prior_samples, style.shape[1], device=style.device, dtype=style.dtype))
        # Every label's MMD² at once: the three kernel matrices are computed once for the batch.
        same = (labels[:, None] == labels[None, :]).to(style.dtype)  # (B, B)
        count = same.sum(1)  # (B,) items of each item's label
        keep = count >= 2
        if not keep.any():
            return style.sum() * 0.0
        kss = _imq(directions, directions) * same  # (B, B), pairs within a label
        within = (kss.sum(1) - kss.diagonal()) / (count * (count - 1)).clamp_min(1)  # (B,) item's share of its label's mean
        cross = _imq(directions, prior).mean(1)  # (B,)
        kpp = _imq(prior, prior)
        m = self.prior_samples
        prior_term = (kpp.sum() - kpp.diagonal().sum()) / (m * (m - 1))
        # Per item i of label k: within_i sums to label k's mean kernel over its pairs when summed over
        # the label's items; cross_i / n_k sums to its mean kernel against the prior.
        per_label = (within - 2 * cross / count) * keep  # (B,)
        labels_kept = torch.unique(labels[keep])
        return per_label.sum() / len(labels_kept) + prior_term

    def describe(self) -> dict[str, object]:
        return {
            "name": "LabelFreeStyleLoss",
            "formula": "mean_k MMD^2_unbiased(normalize(style[y == k]), U(S^{d-3})), IMQ kernels",
            "kernel_scales": list(KERNEL_SCALES),
            "prior_samples": self.prior_samples,
        }
