"""The per-process CUDA memory cap (ATNL_CUDA_MEMORY_FRACTION), for API and worker alike."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("atnl.service")


def limit_cuda_memory(fraction: float | None) -> bool:
    """Cap this process's allocations on every visible GPU at ``fraction`` of its memory;
    False (and nothing done) without CUDA or without a fraction."""
    if fraction is None or not torch.cuda.is_available():
        return False
    for index in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(fraction, index)
    log.info("CUDA memory capped at %.0f%% of each GPU (ATNL_CUDA_MEMORY_FRACTION)", 100 * fraction)
    return True
