"""The naive anchor of ``atnl bench service``: a bare FastAPI endpoint.

One ``POST /v1/encode`` that reads the uploaded PNGs, runs one forward per request and
answers JSON, written the way FastAPI's tutorial writes blocking work (a plain ``def``
endpoint, run in Starlette's thread pool); no validation, limits, batching or metrics.
The bench starts it with the same checkpoint as the service:

    ATNL_BENCH_CHECKPOINT=DIR uvicorn --factory benchmarks.bare_app:create_app

``ATNL_BENCH_TORCH_THREADS`` (0: torch's default) sets its torch threads, ``ATNL_BENCH_DEVICE``
its device (default cpu).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, UploadFile
from PIL import Image

from models import load_checkpoint


def create_app() -> FastAPI:
    device = torch.device(os.environ.get("ATNL_BENCH_DEVICE", "cpu"))
    model = load_checkpoint(os.environ["ATNL_BENCH_CHECKPOINT"], device=device)
    threads = int(os.environ.get("ATNL_BENCH_TORCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    app = FastAPI()

    @app.post("/v1/encode")
    def encode(files: list[UploadFile]) -> dict[str, Any]:
        images = np.stack([np.asarray(Image.open(f.file).convert("L"), np.float32) / 255.0 for f in files])  # (N, H, W)
        with torch.inference_mode():
            latents = model.encode(torch.from_numpy(images)[:, None].to(device))
        return {"latents": latents.cpu().tolist()}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
