"""Benchmark figures (matplotlib, Agg backend): t-SNE grids (paper Figure 5),
interpolation paths with judged labels (paper Figure 6), and hallucination grids
(real examples beside the images hallucinated from them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.manifold import TSNE

TSNE_MIN_ITER = 250
"""scikit-learn's floor on t-SNE iterations."""
TSNE_EXACT_MAX = 200
"""Up to this many points the exact gradient (vectorised numpy) beats Barnes-Hut's per-iteration overhead."""


def tsne(z: np.ndarray, dims: int, seed: int, max_iter: int) -> np.ndarray:
    """(N, d) latents -> (N, dims) t-SNE embedding (PCA init, seeded)."""
    perplexity = min(30.0, max(2.0, (len(z) - 1) / 3))
    method = "exact" if len(z) <= TSNE_EXACT_MAX else "barnes_hut"
    model = TSNE(
        n_components=dims,
        init="pca",
        perplexity=perplexity,
        random_state=seed,
        max_iter=max(TSNE_MIN_ITER, max_iter),
        method=method,
    )
    return model.fit_transform(z.astype(np.float32))


def tsne_grid(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]], label_names: list[str], dims: int, path: Path, title: str
) -> Path:
    """One scatter per family of its (N, dims) embedding coloured by label; saved to ``path``."""
    n = len(embeddings)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = plt.figure(figsize=(4.2 * cols, 4.0 * rows))
    cmap = plt.get_cmap("tab10" if len(label_names) <= 10 else "viridis")
    for i, (name, (e, y)) in enumerate(embeddings.items(), start=1):
        ax = fig.add_subplot(rows, cols, i, projection="3d" if dims == 3 else None)
        colours = cmap(y % 10) if len(label_names) <= 10 else cmap(y / max(1, len(label_names) - 1))
        if dims == 3:
            ax.scatter(e[:, 0], e[:, 1], e[:, 2], c=colours, s=4)  # type: ignore[misc]
        else:
            ax.scatter(e[:, 0], e[:, 1], c=colours, s=4)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        if dims == 3:
            ax.set_zticks([])  # type: ignore[attr-defined]
    handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(k % 10), label=label_names[k]) for k in range(len(label_names))]
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(label_names)), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pixels(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) for a mosaic (C = 1 or 3)."""
    return np.asarray(img.permute(1, 2, 0).numpy(), dtype=np.float32)


def show(ax: Any, mosaic: np.ndarray) -> None:
    """A (H, W, C) mosaic: grey through the grey colour map, colour as it is."""
    if mosaic.shape[2] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(mosaic, 0, 1))


def image_rows(rows: list[tuple[str, torch.Tensor, list[str]]], path: Path, title: str) -> Path:
    """Rows of images (T, C, H, W) in [0, 1], each image captioned by its string; saved to ``path``.

    Each row is one mosaic (one axes), which keeps a 6 x 14 figure fast to draw."""
    cols = max(len(imgs) for _, imgs, _ in rows)
    gap = 2
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.62 * cols + 1.2, 0.95 * len(rows) + 0.6), squeeze=False)
    for (name, imgs, captions), ax in zip(rows, axes[:, 0], strict=True):
        c, h, w = imgs.shape[-3:]
        mosaic = np.ones((h, cols * (w + gap) - gap, c), dtype=np.float32)
        for t, img in enumerate(imgs):
            mosaic[:, t * (w + gap) : t * (w + gap) + w] = pixels(img)
            ax.text(t * (w + gap) + w / 2, h + 1, captions[t], ha="center", va="top", fontsize=7)
        show(ax, mosaic)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def path_figure(rows: list[tuple[str, torch.Tensor, list[int]]], label_names: list[str], path: Path, title: str) -> Path:
    """Interpolation paths (T, C, H, W), each frame captioned with its judged label (paper Figure 6)."""
    return image_rows([(name, frames, [label_names[k] for k in judged]) for name, frames, judged in rows], path, title)


def hallucination_figure(
    panels: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]], label_names: list[str], path: Path, title: str
) -> Path:
    """Side-by-side panels, one per (name, real, hallucinated); row k of a panel is label k's real
    images (n, C, H, W) in [0, 1] on the left, a gap, then its hallucinated images."""
    gap = 2
    n_real = max(len(r) for _, reals, _ in panels for r in reals)
    n_fake = max(len(f) for _, _, fakes in panels for f in fakes)
    c, h, w = panels[0][1][0].shape[-3:]
    step_x, step_y = w + gap, h + gap
    left = n_real * step_x + w  # the real images, then a gap one image wide
    size = (len(panels) * 0.4 * (n_real + n_fake + 1) + 1, 0.4 * len(label_names) + 1.0)
    fig, axes = plt.subplots(1, len(panels), figsize=size, squeeze=False)
    for (name, reals, fakes), ax in zip(panels, axes[0], strict=True):
        mosaic = np.ones((len(label_names) * step_y - gap, left + n_fake * step_x - gap, c), dtype=np.float32)
        for k, (real, fake) in enumerate(zip(reals, fakes, strict=True)):
            for t, img in enumerate(real):
                mosaic[k * step_y : k * step_y + h, t * step_x : t * step_x + w] = pixels(img)
            for t, img in enumerate(fake):
                mosaic[k * step_y : k * step_y + h, left + t * step_x : left + t * step_x + w] = pixels(img)
        show(ax, mosaic)
        ax.set_yticks([k * step_y + h / 2 for k in range(len(label_names))], label_names, fontsize=8)
        ax.set_xticks([n_real * step_x / 2, left + n_fake * step_x / 2], ["real (train)", "hallucinated"], fontsize=9)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.set_frame_on(False)
        ax.set_title(name, fontsize=10, pad=18)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
