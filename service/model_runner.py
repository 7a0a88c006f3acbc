"""A loaded model's forward passes on its device, as every inference operation calls them.

Arrays go in and come out as numpy float32 on the host; in between:

- ``torch.inference_mode`` around every forward (no autograd records, no version counters);
- on CUDA, inputs are copied into a page-locked (pinned) staging buffer kept per thread and
  reused across batches, then sent with ``non_blocking=True``; outputs come back the same way
  (ATNL_CUDA_PIN_MEMORY);
- optional autocast to bf16 or fp16 (ATNL_AUTOCAST) and ``torch.compile`` of encode, code and
  decode (ATNL_TORCH_COMPILE), compiled and warmed up when the model loads, so a hot swap
  does not hand the first requests a compile.

Torch's intra-op threads are set once per process by ``set_torch_threads`` (see
ATNL_TORCH_THREADS): inference threads x torch threads <= CPUs, since more spins
OpenMP workers against each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models import load_checkpoint
from models.device import resolve_device
from models.geometry import Method, latent_path
from models.hallucination import Filter, HallucinationResult, hallucinate
from models.networks import SemanticAutoencoder
from service.cuda_memory import limit_cuda_memory

log = logging.getLogger("atnl.engine")
Autocast = Literal["off", "bf16", "fp16"]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
WARMUP_BATCHES = (1, 3)
"""Batch sizes a compiled model is run on at load: 1 (specialised by torch) and one more,
which makes the batch dimension dynamic."""


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (docker --cpus)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return n


def torch_threads(configured: int, inference_threads: int) -> int:
    """ATNL_TORCH_THREADS, or (0) the CPUs divided by the inference threads, at least 1."""
    return configured or max(1, available_cpus() // inference_threads)


def set_torch_threads(configured: int, inference_threads: int) -> int:
    n = torch_threads(configured, inference_threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def open_device(device: str, cuda_memory_fraction: float | None, configured_threads: int, inference_threads: int) -> torch.device:
    """The serving process's device (``auto``, ``cpu``, ``cuda``), set up once: CUDA's memory
    share and torch's threads (``set_torch_threads``)."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        limit_cuda_memory(cuda_memory_fraction)
    threads = set_torch_threads(configured_threads, inference_threads)
    log.info("inference: %d threads x %d torch threads", inference_threads, threads)
    return resolved


@dataclass(frozen=True)
class RunnerOptions:
    """How forwards run (see service.settings)."""

    autocast: Autocast = "off"
    compile: bool = False
    pin_memory: bool = True


class ModelRunner:
    """``encode``, ``code`` and ``decode`` of one model on its device, numpy in and out."""

    def __init__(self, model: SemanticAutoencoder, device: torch.device, options: RunnerOptions) -> None:
        self.model = model
        self.device = device
        self.options = options
        self._dtype = AUTOCAST_DTYPES.get(options.autocast)
        self._pinned = options.pin_memory and device.type == "cuda"
        self._buffers = threading.local()
        self._encode: Callable[[torch.Tensor], torch.Tensor] = model.encode
        self._code: Callable[[torch.Tensor], torch.Tensor] = model.code
        self._decode: Callable[[torch.Tensor], torch.Tensor] = model.decode
        if options.compile:
            self._compile()

    def _compile(self) -> None:
        """Compile and warm up; a model or platform torch cannot compile stays eager (logged)."""
        compiled = [torch.compile(f, dynamic=True) for f in (self.model.encode, self.model.code, self.model.decode)]
        eager = (self._encode, self._code, self._decode)
        self._encode, self._code, self._decode = compiled
        try:
            for n in WARMUP_BATCHES:
                cfg = self.model.cfg
                images = np.zeros((n, cfg.channels, cfg.image_size, cfg.image_size), np.float32)
                self.decode(self.code(images))
                self.encode(images)
        except Exception:
            log.exception("torch.compile failed; this model runs eager")
            self._encode, self._code, self._decode = eager

    def _staging(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A pinned host tensor of ``shape`` for this thread, reused while big enough."""
        numel = int(np.prod(shape))
        buf: torch.Tensor | None = getattr(self._buffers, name, None)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 2 * (buf.numel() if buf is not None else 0)), pin_memory=True)
            setattr(self._buffers, name, buf)
        return buf[:numel].view(shape)

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """float32 numpy -> a tensor on the model's device (pinned + non-blocking on CUDA)."""
        host = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if self.device.type == "cpu":
            return host
        if not self._pinned:
            return host.to(self.device)
        staged = self._staging("input", tuple(host.shape))
        staged.copy_(host)
        return staged.to(self.device, non_blocking=True)

    def to_host(self, tensor: torch.Tensor) -> np.ndarray:
        """A result on the device -> float32 numpy (through the pinned buffer on CUDA)."""
        tensor = tensor.float()
        if self.device.type == "cpu":
            return tensor.numpy()
        if not self._pinned:
            return tensor.cpu().numpy()
        staged = self._staging("output", tuple(tensor.shape))
        staged.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return staged.numpy().copy()  # the buffer is this thread's next output

    def images_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, H, W) in the model's shape -> the same on the device."""
        return self.to_device(images)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Inference mode, under the configured autocast."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self._dtype, enabled=self._dtype is not None):
            yield

    def _forward(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        with self.inference():
            return fn(x)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) in [0, 1] -> (N, d) unit latents."""
        return self.to_host(self._forward(self._encode, self.images_tensor(images)))

    def code(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) in [0, 1] -> (N, d) latents as the decoder reads them (models: ``code``)."""
        return self.to_host(self._forward(self._code, self.images_tensor(images)))

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N, d) latents -> (N, C, H, W) images in [0, 1]."""
        return self.to_host(self._forward(self._decode, self.to_device(latents)))

    def path(self, images: np.ndarray, omegas: np.ndarray, method: Method) -> np.ndarray:
        """(2, C, H, W) start and end -> (len(omegas), C, H, W) frames decoded at ``omegas`` in [0, 1]
        along the path between their codes (``models.geometry.latent_path``)."""
        codes = torch.from_numpy(self.code(images))  # (2, d)
        path = latent_path(codes[0], codes[1], torch.from_numpy(omegas).to(codes.dtype), method, self.model.cfg.spherical)
        return self.decode(path.numpy())  # (steps, C, H, W)

    def hallucinate(
        self, images: np.ndarray, labels: Sequence[int], num_labels: int, per_class: int | None, n: int | None,
        strategy: str, seed: int, filter: Filter,
    ) -> tuple[HallucinationResult, np.ndarray]:  # fmt: skip
        """(N, C, H, W) examples with label indices in [0, ``num_labels``) -> what
        ``models.hallucination.hallucinate`` made, and its images as (M, C, H, W) float32 in [0, 1]
        on the host."""
        x = self.images_tensor(images)
        with self.inference():
            made = hallucinate(self.model, x, torch.tensor(list(labels)), num_labels, per_class, n, strategy, seed, filter)
        pixels = [s.image.float().cpu().numpy() for s in made.samples]
        shape = (0, self.model.cfg.channels, self.model.cfg.image_size, self.model.cfg.image_size)
        return made, np.stack(pixels) if pixels else np.empty(shape, np.float32)


def load_runner(path: Path, device: torch.device, options: RunnerOptions) -> ModelRunner:
    """The checkpoint directory ``path`` loaded onto ``device``, behind a runner."""
    return ModelRunner(load_checkpoint(path, device=device), device, options)


def load_runner_on(path: Path, device: str) -> ModelRunner:
    """``load_runner`` on the device named ``device`` (auto, cpu, cuda, ...) with default options."""
    from models.device import resolve_device

    return load_runner(path, torch.device(resolve_device(device)), RunnerOptions())
