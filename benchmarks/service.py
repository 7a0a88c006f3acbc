"""``atnl bench service``: requests/s and p50/p99 latency of encode, interpolate and
hallucinate through a real ``atnl serve`` process under concurrent load, against the
same model called in-process (the ceiling), in one run (docs/API.md §8.2)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import hardware, md_table, write_report
from models import load_dataset

OPS = ("encode", "interpolate", "hallucinate")


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def summary(seconds: list[float], wall: float) -> dict[str, float]:
    return {
        "requests": len(seconds),
        "rps": len(seconds) / wall,
        "p50_ms": percentile_ms(seconds, 50),
        "p99_ms": percentile_ms(seconds, 99),
    }


def sample_requests(data: Any) -> dict[str, dict[str, Any]]:
    """One request body per op, from real mnist-5k digits as PNG bytes (5 per label for hallucinate)."""
    from service.imaging import png_bytes

    by_label = {k: (data.labels == k).nonzero()[:5, 0].tolist() for k in range(data.num_labels)}
    pngs = {i: png_bytes(data.images[i].numpy()) for ids in by_label.values() for i in ids}
    a, b = by_label[0][0], by_label[min(5, data.num_labels - 1)][0]
    few = [i for ids in by_label.values() for i in ids]
    return {
        "encode": {"files": [("files", ("a.png", pngs[a], "image/png"))]},
        "interpolate": {
            "files": {"start": ("a.png", pngs[a], "image/png"), "end": ("b.png", pngs[b], "image/png")},
            "data": {"steps": "8"},
        },
        "hallucinate": {
            "files": [("files", (f"{i}.png", pngs[i], "image/png")) for i in few],
            "data": {"labels": ",".join(data.label_names[int(data.labels[i])] for i in few), "per_class": "2", "seed": "0"},
        },
    }


def in_process(checkpoint: Path, data: Any, n: int) -> dict[str, dict[str, float]]:
    """The ceiling: the engine's own per-operation work (upload bytes -> model -> PNG) called back to back."""
    import torch

    from models import load_checkpoint
    from service import engine, imaging

    lm = engine.LoadedModel("bench", load_checkpoint(checkpoint), torch.device("cpu"))
    bodies = sample_requests(data)
    unlimited = imaging.DecodeLimits(max_pixels=10**8, max_decoded_bytes=2**32)  # the ceiling: no limits in the way
    limits = imaging.RequestLimits(unlimited, 2**40, 120)

    def uploads(files: Any) -> engine.Uploads:
        items = list(files.items()) if isinstance(files, dict) else files
        return engine.Uploads([blob for _, (_, blob, _) in items], [name for name, _ in items])

    def encode() -> Any:
        return lm.encode(uploads(bodies["encode"]["files"]), True, limits)

    def interpolate() -> Any:
        return lm.interpolate(uploads(bodies["interpolate"]["files"]), 8, "slerp", True, "json", limits)

    def hallucinate() -> Any:
        body = bodies["hallucinate"]
        plan = engine.HallucinationPlan(2, None, None, 0, True, "json")
        return lm.hallucinate(uploads(body["files"]), body["data"]["labels"].split(","), plan, limits)

    out = {}
    for op, fn in zip(OPS, (encode, interpolate, hallucinate), strict=True):
        fn()  # warm-up
        times = []
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[op] = summary(times, time.perf_counter() - start)
    return out


async def run_op(client: Any, op: str, body: dict[str, Any], n: int, concurrency: int) -> dict[str, float]:
    """``n`` requests of one op from ``concurrency`` clients at once."""
    await client.post(f"/v1/{op}", **body)  # warm-up
    times: list[float] = []
    statuses: list[int] = []
    todo = iter(range(n))

    async def user() -> None:
        for _ in todo:
            t = time.perf_counter()
            r = await client.post(f"/v1/{op}", **body)
            times.append(time.perf_counter() - t)
            statuses.append(r.status_code)

    start = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return {**summary(times, time.perf_counter() - start), "failures": sum(s != 200 for s in statuses)}


async def load_test(base_url: str, bodies: dict[str, dict[str, Any]], n: int, concurrency: int) -> dict[str, dict[str, float]]:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return {op: await run_op(client, op, bodies[op], n, concurrency) for op in OPS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(store: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "ATNL_MODEL_STORE": str(store), "ATNL_PORT": str(port), "ATNL_HOST": "127.0.0.1"}
    env |= {"ATNL_BOOTSTRAP_DEFAULT_MODEL": "false", "ATNL_LOG_LEVEL": "warning", "ATNL_DEVICE": "cpu"}
    exe = Path(sys.executable).parent / "atnl"
    return subprocess.Popen([str(exe), "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(base_url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"atnl serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("atnl serve did not become ready")


def resolve_checkpoint(checkpoint: Path | None, quick: bool, device: str, tmp: Path) -> Path:
    """The checkpoint to serve: the one given, else the store's active model, else (``quick``) a
    one-epoch model trained into ``tmp``. LookupError when there is none and not ``quick``."""
    from service.settings import get_settings
    from service.store import ModelStore

    if checkpoint is not None:
        return checkpoint
    store = get_settings().model_store
    model_id = ModelStore(store).default_id()
    if model_id is not None:
        return store / model_id
    if not quick:
        raise LookupError("no model in ATNL_MODEL_STORE; pass --checkpoint or --quick")
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    return train_to_checkpoint(TrainConfig(epochs=1, latent_dim=8, device=device), tmp / "quick", data=load_dataset("mnist-5k"))


def run_service(checkpoint: Path, out: Path, n: int, concurrency: int, device: str, command: str, tmp: Path) -> Path:
    """``n`` requests per op in process and through a real ``atnl serve``; writes service.md + .json."""
    data = load_dataset("mnist-5k")
    store = tmp / "store"
    shutil.copytree(checkpoint, store / "bench")
    ceiling = in_process(store / "bench", data, n)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proc = serve(store, port, tmp / "serve.log")
    try:
        wait_ready(base_url, proc)
        served = asyncio.run(load_test(base_url, sample_requests(data), n, concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows = [
        [op, f"{served[op]['rps']:.1f}", f"{served[op]['p50_ms']:.1f}", f"{served[op]['p99_ms']:.1f}", served[op]["failures"],
         f"{ceiling[op]['rps']:.1f}", f"{ceiling[op]['p50_ms']:.1f}", f"{ceiling[op]['p99_ms']:.1f}"]
        for op in OPS
    ]  # fmt: skip
    header = [
        "op",
        "API req/s",
        "API p50 ms",
        "API p99 ms",
        "failures",
        "in-process req/s",
        "in-process p50 ms",
        "in-process p99 ms",
    ]
    body = (
        f"{n} requests per op; API: {concurrency} concurrent clients against `atnl serve` (uvicorn, one process); "
        "in-process: the same engine calls back to back (the ceiling). encode: 1 image; interpolate: 8 frames; "
        "hallucinate: 50 images in, 20 out.\n\n" + md_table(header, rows)
    )
    record = {
        "requests_per_op": n,
        "concurrency": concurrency,
        "checkpoint": str(checkpoint),
        "api": served,
        "in_process": ceiling,
    }
    return write_report(out, "service", "Service throughput and latency", command, hardware(device), body, record)
