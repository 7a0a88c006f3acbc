"""Prometheus metrics of the API process (served at GET /metrics)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("atnl_requests_total", "HTTP requests answered.", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "atnl_request_seconds",
    "HTTP request latency, seconds.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "atnl_batch_size", "Images per inference request.", ["op"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
)
INFERENCE_SECONDS = Histogram(
    "atnl_inference_seconds",
    "Time inside the model thread, seconds.",
    ["op"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
JOBS = Counter("atnl_jobs_total", "Training job actions taken through this API.", ["event"])
MODEL_INFO = Gauge("atnl_model_info", "1 for the model version this process serves.", ["model_id"])
MODEL_LOADED = Gauge("atnl_model_loaded", "1 once a model is loaded and inference is ready.")
MODEL_SWAPS = Counter("atnl_model_swaps_total", "Model loads that became the served model (first load included).")


def set_active_model(model_id: str, previous: str | None) -> None:
    if previous is not None:
        with contextlib.suppress(KeyError):
            MODEL_INFO.remove(previous)
    MODEL_INFO.labels(model_id).set(1)
    MODEL_LOADED.set(1)
    MODEL_SWAPS.inc()
