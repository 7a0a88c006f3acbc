"""Class-balanced batches: every label present in every batch, so that the
in-batch triplet miner always finds neighbours and negatives."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from models.errors import InputError


def class_balanced_batches(labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Yield (batch_size,) index tensors for one epoch.

    Each batch holds ``batch_size // K`` items of each of the K labels (the
    remainder filled at random); an epoch is ``len(labels) // batch_size``
    batches, labels with fewer items being cycled (reshuffled) as needed."""
    classes = labels.unique()
    k = len(classes)
    if batch_size < k:
        raise InputError(f"batch_size {batch_size} is smaller than the number of labels {k}")
    per_class = batch_size // k
    pools = [(labels == c).nonzero().squeeze(1) for c in classes]
    queues = [p[torch.randperm(len(p), generator=generator)] for p in pools]
    cursors = [0] * k
    for _ in range(max(1, len(labels) // batch_size)):
        parts = []
        for i, pool in enumerate(pools):
            if cursors[i] + per_class > len(queues[i]):
                # A label with fewer items than its share needs several shuffles to fill it.
                laps = -(-per_class // len(pool))
                queues[i] = torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(laps)])
                cursors[i] = 0
            parts.append(queues[i][cursors[i] : cursors[i] + per_class])
            cursors[i] += per_class
        rest = batch_size - per_class * k
        if rest:
            parts.append(torch.randint(len(labels), (rest,), generator=generator))
        yield torch.cat(parts)
