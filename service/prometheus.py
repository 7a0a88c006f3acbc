"""Prometheus metrics of the API process (served at GET /metrics)."""

from __future__ import annotations

import contextlib
import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
BATCH_IMAGES = Histogram(
    "atnl_batch_images",
    "Images per batched forward (dynamic batching of concurrent requests).",
    ["op"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
BATCH_QUEUED = Gauge("atnl_batch_queued_images", "Images waiting in the batch queues.", ["op"])
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


class RequestMetrics:
    """ASGI middleware counting every answered request by route template and status,
    500s from unhandled errors included (they are answered outside this middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception escaped and becomes a 500
        start = time.perf_counter()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            REQUEST_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - start)
