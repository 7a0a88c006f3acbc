"""The active model's own test images and a 2-D map of their latents, for the Playground.

Both are read from the model's checkpoint (``data.spec`` and ``data.test_indices``) and
computed once per loaded model: they are kept beside the model object (a weak key), so a
hot swap gets a fresh pair and the old one goes with the old model.

Two layouts, each a fixed map from a unit latent ẑ (d,) to the plane, returned with its
parameters so a client can place any latent from POST /v1/encode (a slerp path, say):

- ``order-circle``, for a model with an order circle (latent axes 0 and 1,
  ``ModelConfig.num_labels`` >= 2): a point sits at its order angle ψ = atan2(ẑ_1, ẑ_0)
  on the order circle, drawn as the unit circle with the labels left to right over its
  top, at radius ρ/ρ̄ (ρ = ||ẑ_{0,1}||, ρ̄ its mean over the test latents: a path that
  leaves the sphere, as lerp does, falls inside), offset by the first two principal
  components of its style (ẑ_{2..d}) scaled to a quarter of the distance between two
  label centres. A linear projection cannot show both: a model whose encoder snaps ψ to
  the sector centres puts every test image of a label on one point of the order plane,
  and a plain PCA of ẑ flattens the circle into a line when one style axis varies more
  than the circle's short side.
    (x, y) = ρ/ρ̄ · (sin ψ, cos ψ) + style_scale · (style_components @ (ẑ_{2..d} - style_mean))
- ``pca``, for models without one (the baselines): (x, y) = components @ (ẑ - mean).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.order_circle import sector_centres
from models.pipeline import load_model_dataset
from service.dataset_store import open_datasets
from service.errors import ServiceError, redact_paths
from service.settings import get_settings

if TYPE_CHECKING:
    from service.loaded_model import LoadedModel
    from service.model_runner import ModelRunner

MAP_POINTS_PER_LABEL = 100
"""Most test images of one label kept for the map and the sample listings (the first ones
in data set order): 1,000 points for mnist-5k's whole test split, and a bounded page and
memory for a full-MNIST model."""
MAX_SAMPLES_PER_LABEL = 20
"""Most samples of one label GET /v1/samples lists in one answer."""
ENCODE_BATCH = 256
"""Test images encoded per forward pass while building the map."""


class TestImagesUnavailable(ServiceError):
    """The active model's test images cannot be read on this server (its data set is not
    here, or its checkpoint records no test split)."""

    status = 404
    title = "Test images unavailable"


@dataclass(frozen=True)
class TestImages:
    """The model's test images, at most MAP_POINTS_PER_LABEL a label, ordered by label then index."""

    indices: np.ndarray
    """(N,) int: each image's index in the model's data set (``data.test_indices`` holds them)."""
    labels: np.ndarray
    """(N,) int: label index in the model's label order."""
    images: np.ndarray
    """(N, C, H, W) float32 in [0, 1], as the data set stores them."""

    def position(self, index: int) -> int | None:
        """Row of data set index ``index``, or None when it is not kept here."""
        rows = np.flatnonzero(self.indices == index)
        return int(rows[0]) if len(rows) else None


MapKind = Literal["order-circle", "pca"]
"""The two layouts (see the module docstring)."""


@dataclass(frozen=True)
class LatentMap:
    """A layout of the model's test latents; ``project`` places any latent the same way."""

    kind: MapKind
    mean: np.ndarray
    """(m,) centre of the PCA'd coordinates: all of ẑ (pca) or its style part ẑ_{2..d}."""
    components: np.ndarray
    """(2, m) orthonormal principal directions of those coordinates."""
    explained_variance: np.ndarray
    """(2,) share of those coordinates' variance along each component, in [0, 1]."""
    radius: float
    """ρ̄: mean norm of the test latents in the order plane (order-circle); 1 for pca."""
    style_scale: float
    """Factor on the style offset (order-circle); 1 for pca."""
    xy: np.ndarray
    """(N, 2) the test latents placed, rows as ``TestImages``."""
    centres: np.ndarray | None
    """(K, 2) each label's sector centre on the unit circle, in label order; None for pca."""

    def project(self, z: np.ndarray) -> np.ndarray:
        """(N, d) latents -> (N, 2) map coordinates."""
        if self.kind == "pca":
            return np.asarray((z - self.mean) @ self.components.T, dtype=np.float64)
        psi, rho = np.arctan2(z[:, 1], z[:, 0]), np.linalg.norm(z[:, :2], axis=1) / self.radius
        on_circle = np.stack([rho * np.sin(psi), rho * np.cos(psi)], axis=1)
        return np.asarray(on_circle + self.style_scale * ((z[:, 2:] - self.mean) @ self.components.T), dtype=np.float64)


@dataclass
class _ModelEntry:
    lock: threading.Lock
    test_images: TestImages | None = None
    latent_map: LatentMap | None = None


_entries: weakref.WeakKeyDictionary[ModelRunner, _ModelEntry] = weakref.WeakKeyDictionary()
_entries_lock = threading.Lock()


def _entry(lm: LoadedModel) -> _ModelEntry:
    with _entries_lock:
        entry = _entries.get(lm.runner)
        if entry is None:
            entry = _entries[lm.runner] = _ModelEntry(threading.Lock())
        return entry


def _read_test_images(lm: LoadedModel) -> TestImages:
    data_meta = lm.meta.get("data") or {}
    spec, test_indices = data_meta.get("spec"), data_meta.get("test_indices")
    if not isinstance(spec, str) or not isinstance(test_indices, list) or not test_indices:
        raise TestImagesUnavailable(f"model {lm.id} records no test split (data.spec and data.test_indices)")
    try:
        data = load_model_dataset(lm.model, open_datasets(get_settings()).upload_root(spec))
    except (OSError, ValueError, ServiceError) as e:  # ServiceError: an upload deleted since, the store down
        raise TestImagesUnavailable(f"the data set of model {lm.id} cannot be read here: {redact_paths(str(e))}") from e
    idx = np.asarray(test_indices, dtype=np.int64)
    if idx.min() < 0 or idx.max() >= len(data):
        raise TestImagesUnavailable(f"model {lm.id}'s test indices do not fit its data set {redact_paths(spec)}")
    labels = data.labels.numpy()[idx]
    keep = np.concatenate([idx[labels == k][:MAP_POINTS_PER_LABEL] for k in range(data.num_labels)])
    images = data.images.numpy()[keep]  # (N, C, H, W)
    if images.shape[1:] != lm.image_shape:
        raise TestImagesUnavailable(f"model {lm.id} reads {lm.image_shape} images; its data set has {images.shape[1:]}")
    return TestImages(keep, data.labels.numpy()[keep], np.ascontiguousarray(images, dtype=np.float32))


def test_images(lm: LoadedModel) -> TestImages:
    """The model's test images, read once per loaded model (blocking: call it off the event loop)."""
    entry = _entry(lm)
    with entry.lock:
        if entry.test_images is None:
            entry.test_images = _read_test_images(lm)
        return entry.test_images


def _encode(lm: LoadedModel, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, d) unit latents, in batches, through the model's runner."""
    batches = range(0, len(images), ENCODE_BATCH)
    return np.concatenate([lm.runner.encode(images[start : start + ENCODE_BATCH]).astype(np.float64) for start in batches])


STYLE_SPREAD = 0.25
"""Root-mean-square style offset on the order-circle layout, as a share of the distance
between two neighbouring label centres: clusters stay apart, styles stay visible."""


def _principal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA of (N, m) rows: (mean (m,), components (2, m), explained share (2,), variance (2,)),
    each component's largest loading positive so one model always draws one map."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = np.zeros((2, x.shape[1]))
    variance = np.zeros(2)
    k = min(2, len(s))
    components[:k], variance[:k] = vt[:k], s[:k] ** 2 / len(x)
    for row in components:
        if row.any() and row[np.abs(row).argmax()] < 0:
            row *= -1
    total = float(((x - mean) ** 2).sum(axis=1).mean())
    return mean, components, variance / max(total, 1e-12), variance


def _build_map(lm: LoadedModel, test: TestImages) -> LatentMap:
    z = _encode(lm, test.images)  # (N, d)
    cfg = lm.model.cfg
    if cfg.num_labels < 2 or z.shape[1] < 3:
        mean, components, explained, _ = _principal(z)
        layout = LatentMap("pca", mean, components, explained, 1.0, 1.0, np.zeros((0, 2)), None)
        return replace(layout, xy=layout.project(z))
    phi = sector_centres(cfg.num_labels, cfg.circle_span).double().numpy()  # (K,)
    centres = np.stack([np.sin(phi), np.cos(phi)], axis=1)  # (K, 2), as project places them
    mean, components, explained, variance = _principal(z[:, 2:])
    neighbours = 2 * np.sin(cfg.circle_span / cfg.num_labels / 2)  # chord between two centres
    spread = float(np.sqrt(variance.sum()))
    scale = STYLE_SPREAD * neighbours / spread if spread > 1e-9 else 0.0
    radius = float(np.linalg.norm(z[:, :2], axis=1).mean()) or 1.0
    layout = LatentMap("order-circle", mean, components, explained, radius, scale, np.zeros((0, 2)), centres)
    return replace(layout, xy=layout.project(z))


def latent_map(lm: LoadedModel) -> LatentMap:
    """The model's latent map, computed once per loaded model (blocking: call it off the event loop)."""
    test = test_images(lm)
    entry = _entry(lm)
    with entry.lock:
        if entry.latent_map is None:
            entry.latent_map = _build_map(lm, test)
        return entry.latent_map
