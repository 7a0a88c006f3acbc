"""Restyled label consistency: a restyled decode must still read as its order part's label."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.networks import SemanticAutoencoder


def restyled_label_consistency(model: SemanticAutoencoder, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the encoder's order head on ``images`` (B, C, H, W), decoded from
    ``order_circle.restyled_latents``, against the labels (B,) of the order parts they were
    decoded from.

    Reconstruction only ever pairs a sector with the style of an image of that label; a
    path's middle pairs sector k with styles of other labels, and the decoder then drew
    some 4s with a 9's closed top (judged 9 for one seed in nine). The head is a frozen
    critic here (its weights are detached, so it cannot learn to read decoded images).
    Returns a scalar."""
    k = model.cfg.num_labels
    frozen = {name: p.detach() for name, p in model.encoder.named_parameters()}
    logits = torch.func.functional_call(model.encoder, frozen, (images,))[:, :k]
    return F.cross_entropy(logits, labels)
