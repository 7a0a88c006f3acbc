"""``atnl bench service``: the service under load, against the same model in process and
against a bare FastAPI endpoint, in one run (docs/API.md §8.2).

Every server is a real process on loopback (``atnl serve`` with batching on, then off;
``benchmarks.bare_app`` under uvicorn with torch's default threads and with one), loaded
from this process by benchmarks.load; psutil reads each server's CPU time and RSS.

- encode, 64 images a request, 8 concurrent: images/s and server CPU per image, against
  the engine's own work called in process (the ceiling); efficiency = in-process CPU per
  image / the server's;
- encode, 1 image a request, 32 concurrent: requests/s, p50, p99, against the bare endpoint;
- interpolate, 14 frames, one request at a time: p50, against in process;
- /healthz p99 while hallucinate requests saturate the inference threads;
- RSS before and after a soak of mixed requests (10,000 by default);
- docs/API.md §8.2's service table: encode, interpolate, hallucinate at ``concurrency`` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import Connection, Outcome, Prepared, poll_while, prepare, run_load
from benchmarks.pyspy import Recorder, py_spy
from benchmarks.report import hardware, write_report
from benchmarks.servers import Server
from benchmarks.service_report import render
from models import load_dataset, read_meta

BIG_IMAGES, BIG_CLIENTS = 64, 8
"""Row 1: images per encode request, concurrent clients."""
SMALL_CLIENTS = 32
"""Row 2: concurrent clients of 1-image encode requests."""
MORPH_FRAMES = 14
"""Row 3: frames of the interpolation (endpoints included), one request at a time."""
SATURATE_CLIENTS = 8
"""Row 4: concurrent hallucinate clients (twice the default inference threads)."""
HEALTH_POLL_S = 0.02
"""Row 4: pause between two /healthz requests."""
SOAK_CLIENTS = 16
SOAK_MIX = ("encode1",) * 18 + ("encode8",) * 4 + ("decode4",) * 8 + ("interpolate8",) * 8 + ("hallucinate", "encode64")
"""Row 5: the mixed requests, in this repeating order."""
SOAK_WARMUP = 0.3
"""Row 5: share of the soak's count sent first, before the RSS baseline. glibc keeps the heap
that forwards of each new batch size freed (malloc_trim gives it back: this is kept memory, not
leaked): RSS climbs for the first few thousand mixed requests, then stays flat."""
SERVER_START_S = 900.0
"""Longest wait for a server to serve: ATNL_TORCH_COMPILE compiles at load, minutes on a CPU."""
OPS = {"encode": "encode1", "interpolate": "interpolate8", "hallucinate": "hallucinate"}
"""docs/API.md §8.2's service table: op -> request (encode: 1 image, interpolate: 8 frames, hallucinate: 50 in, 20 out)."""


@dataclass(frozen=True)
class ServiceBenchConfig:
    device: str = "cpu"
    big_requests: int = 100
    """Row 1 requests (64 images each)."""
    small_requests: int = 2000
    """Row 2 requests (1 image each)."""
    morph_requests: int = 200
    """Row 3 requests."""
    saturate_requests: int = 48
    """Row 4: hallucinate requests sent while /healthz is polled."""
    soak_requests: int = 10_000
    """Row 5: mixed requests between the two RSS readings."""
    op_requests: int = 100
    """docs/API.md §8.2's service table: requests per op."""
    concurrency: int = 8
    """docs/API.md §8.2's service table: concurrent clients."""
    variants: tuple[tuple[str, ...], ...] = ()
    """Extra service runs of rows 1-2, each with these ``ATNL_X=value`` settings (the CUDA options)."""
    profile: bool = False
    """Then rows 1-2 once more on the batching service under py-spy (not measured: sampling costs
    CPU), to report where its CPU goes."""

    @classmethod
    def quick(cls, **kw: Any) -> ServiceBenchConfig:
        sizes = {"big_requests": 4, "small_requests": 64, "morph_requests": 8, "saturate_requests": 4}
        return cls(**{**sizes, "soak_requests": 40, "op_requests": 8, **kw})


@dataclass
class Bodies:
    """Request bodies from real mnist-5k digits as PNG bytes."""

    pngs: list[bytes]
    """64 digits (row 1), the first also row 2's image."""
    labelled: list[tuple[bytes, str]]
    """5 digits of each label (hallucinate)."""
    latent_dim: int
    requests: dict[str, Callable[[int], Prepared]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Any, latent_dim: int) -> Bodies:
        from service.answer_files import png_bytes

        pngs = [png_bytes(data.images[i].numpy()) for i in range(BIG_IMAGES)]
        by_label = [(data.labels == k).nonzero()[:5, 0].tolist() for k in range(data.num_labels)]
        labelled = [(png_bytes(data.images[i].numpy()), data.label_names[k]) for k, ids in enumerate(by_label) for i in ids]
        return cls(pngs, labelled, latent_dim)

    def files(self, n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
        return [("files", (f"{k}.png", self.pngs[k % len(self.pngs)], "image/png")) for k in range(n)]

    def prepared(self, port: int) -> dict[str, Prepared]:
        """Every request the bench sends, for the server on ``port`` (preprocess=none: PNG digits)."""
        none = {"preprocess": "none"}
        pair = {"start": ("a.png", self.pngs[0], "image/png"), "end": ("b.png", self.pngs[1], "image/png")}
        latents = np.random.default_rng(0).normal(size=(4, self.latent_dim))
        labels = ",".join(label for _, label in self.labelled)
        few = [("files", (f"{k}.png", png, "image/png")) for k, (png, _) in enumerate(self.labelled)]
        out = {f"encode{n}": prepare(f"encode{n}", port, "/v1/encode", files=self.files(n), data=none) for n in (1, 8, 64)}
        for steps in (8, MORPH_FRAMES):
            out[f"interpolate{steps}"] = prepare(
                f"interpolate{steps}", port, "/v1/interpolate", files=pair, data={**none, "steps": str(steps)}
            )
        out["hallucinate"] = prepare(
            "hallucinate", port, "/v1/hallucinate", files=few, data={**none, "labels": labels, "per_class": "2"}
        )
        unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
        out["decode4"] = prepare("decode4", port, "/v1/decode", json={"latents": unit.tolist()})
        out["healthz"] = prepare("healthz", port, "/healthz")
        return out


def timed(fn: Callable[[], Any], n: int) -> tuple[list[float], float]:
    """``fn()`` ``n`` times after one warm-up: (wall seconds each, CPU seconds of this process in all)."""
    fn()
    times, cpu = [], time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times, time.process_time() - cpu


class InProcess:
    """The ceiling: the engine's own work per request (upload bytes -> model -> answer) called in
    this process, with the torch threads the server uses."""

    def __init__(self, checkpoint: Path, bodies: Bodies, device: str) -> None:
        import torch

        from service import imaging
        from service.loaded_model import HallucinationPlan, LoadedModel, Uploads
        from service.model_runner import RunnerOptions, load_runner

        self.bodies = bodies
        lm = LoadedModel("bench", load_runner(checkpoint, torch.device(device), RunnerOptions()))
        limits = imaging.ImagePolicy(imaging.ImageCaps(10**8, 2**32), 2**40, 120)  # no limits in the way

        def uploads(pngs: list[bytes], names: list[str] | None = None) -> Uploads:
            return Uploads(pngs, names or [f"files[{k}]" for k in range(len(pngs))])

        big, one = uploads(bodies.pngs[:BIG_IMAGES]), uploads(bodies.pngs[:1])
        pair = uploads(bodies.pngs[:2], ["start", "end"])
        few, labels = uploads([png for png, _ in bodies.labelled]), [label for _, label in bodies.labelled]
        plan = HallucinationPlan(2, None, None, 0, "none", "json")
        self.calls: dict[str, Callable[[], Any]] = {
            "encode64": lambda: lm.encode(big, "none", limits),
            "interpolate14": lambda: lm.interpolate(pair, MORPH_FRAMES, "slerp", "none", "json", limits),
            "encode1": lambda: lm.encode(one, "none", limits),
            "interpolate8": lambda: lm.interpolate(pair, 8, "slerp", "none", "json", limits),
            "hallucinate": lambda: lm.hallucinate(few, labels, plan, limits),
        }

    def measure(self, cfg: ServiceBenchConfig) -> dict[str, Any]:
        """Each call back to back: latency, and CPU time of this process per request (and image)."""
        out: dict[str, Any] = {}
        for name, fn in self.calls.items():
            n = {"encode64": cfg.big_requests, "interpolate14": cfg.morph_requests}.get(name, cfg.op_requests)
            times, cpu = timed(fn, n)
            out[name] = {**Outcome(times, {200: n}, sum(times)).summary(), "cpu_ms_per_request": 1000 * cpu / n}
        out["multipart_encode64"] = multipart_cost(self.bodies, cfg.big_requests)
        out["encode64"]["img_s"] = out["encode64"]["rps"] * BIG_IMAGES
        out["encode64"]["cpu_ms_per_image"] = out["encode64"]["cpu_ms_per_request"] / BIG_IMAGES
        return out


def multipart_cost(bodies: Bodies, n: int) -> dict[str, float]:
    """CPU time of parsing row 1's body alone, in process: the streaming tally of BodyCaps
    (service.body_caps) and Starlette's form parser with the reads of every file, ms an image."""
    from starlette.requests import Request

    from service.body_caps import MultipartTally
    from service.settings import Settings

    request = prepare("encode64", 0, "/v1/encode", files=bodies.files(BIG_IMAGES), data={"preprocess": "none"})
    head, _, body = request.raw.partition(b"\r\n\r\n")
    content_type = next(v.strip() for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-type")
    boundary = content_type.split(b"boundary=")[1]
    settings = Settings(_env_file=None)

    async def parse() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": [(b"content-type", content_type)]}
        form = await Request(scope, receive).form(max_files=BIG_IMAGES)
        for upload in form.getlist("files"):
            await upload.read()  # type: ignore[union-attr]
        await form.close()

    loop = asyncio.new_event_loop()
    try:
        _, tally = timed(lambda: MultipartTally(boundary, settings).feed(body), n)
        _, form = timed(lambda: loop.run_until_complete(parse()), n)
    finally:
        loop.close()
    return {"tally_ms_per_image": 1000 * tally / n / BIG_IMAGES, "form_ms_per_image": 1000 * form / n / BIG_IMAGES}


async def interleaved(port: int, requests: dict[str, Prepared], call: Callable[[], Any], n: int) -> dict[str, Any]:
    """Row 3: the interpolation through the service, the same call in process and a GET /healthz
    (the HTTP floor: a round trip that does nothing), one after the other ``n`` times on one
    connection, so all three are timed under the same load of the machine."""
    conn = await Connection.open(port)
    outcomes = {"service": Outcome(), "in_process": Outcome(), "healthz": Outcome()}
    try:
        for k in range(n + 5):  # the first 5: warm-up
            t = time.perf_counter()
            call()
            took = {"in_process": (200, time.perf_counter() - t)}
            for name, request in (("service", requests["interpolate14"]), ("healthz", requests["healthz"])):
                t = time.perf_counter()
                status, _ = await conn.send(request)
                took[name] = (status, time.perf_counter() - t)
            for name, (status, seconds) in took.items():
                if k >= 5:
                    outcomes[name].record(status, seconds)
    finally:
        conn.close()
    wall = sum(sum(o.seconds) for o in outcomes.values())
    for outcome in outcomes.values():
        outcome.wall = wall
    return {name: outcome.summary() for name, outcome in outcomes.items()}


async def measured(server: Server, request: Prepared, n: int, clients: int, images: int = 1) -> dict[str, Any]:
    """``n`` requests from ``clients`` at once (after a warm-up), with the server's CPU time per image."""
    await run_load(server.port, request, 2 * clients, clients)  # warm-up: connections, first batches
    cpu = server.cpu_seconds()
    outcome = await run_load(server.port, request, n, clients)
    cpu = server.cpu_seconds() - cpu
    done = max(outcome.statuses.get(200, 0), 1)
    result = outcome.summary()
    return {**result, "img_s": result["rps"] * images, "cpu_ms_per_image": 1000 * cpu / (done * images)}


async def throughput_rows(server: Server, requests: dict[str, Prepared], cfg: ServiceBenchConfig) -> dict[str, Any]:
    """Rows 1 and 2."""
    return {
        "encode64": await measured(server, requests["encode64"], cfg.big_requests, BIG_CLIENTS, BIG_IMAGES),
        "encode1": await measured(server, requests["encode1"], cfg.small_requests, SMALL_CLIENTS),
    }


async def service_rows(
    server: Server, requests: dict[str, Prepared], cfg: ServiceBenchConfig, ceiling: InProcess
) -> dict[str, Any]:
    """Rows 3-5 and docs/API.md §8.2's service table, on the service."""
    port = server.port
    morph = await interleaved(port, requests, ceiling.calls["interpolate14"], cfg.morph_requests)
    saturate = asyncio.create_task(run_load(port, requests["hallucinate"], cfg.saturate_requests, SATURATE_CLIENTS))
    health = await poll_while(port, requests["healthz"], [saturate], HEALTH_POLL_S)
    ops = {op: await measured(server, requests[name], cfg.op_requests, cfg.concurrency) for op, name in OPS.items()}
    mixed = lambda k: requests[SOAK_MIX[k % len(SOAK_MIX)]]  # noqa: E731
    warmup = int(SOAK_WARMUP * cfg.soak_requests)
    await run_load(port, mixed, warmup, SOAK_CLIENTS)
    rss_before = server.rss_bytes()
    per_kind: dict[str, Outcome] = {}
    soak = await run_load(port, mixed, cfg.soak_requests, SOAK_CLIENTS, per_kind)
    rss_after = server.rss_bytes()
    return {
        "interpolate14": morph,
        "healthz_under_hallucinate": {**health.summary(), "hallucinate": (await saturate).summary()},
        "ops": ops,
        "soak": {
            **soak.summary(),
            "rss_before_mb": rss_before / 2**20,
            "rss_after_mb": rss_after / 2**20,
            "rss_growth_percent": 100.0 * (rss_after - rss_before) / rss_before,
            "warmup_requests": warmup,
            "by_request": {name: o.summary() for name, o in sorted(per_kind.items())},
        },
    }


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start(timeout=SERVER_START_S)
    try:
        yield server
    finally:
        server.stop()


async def measure_service(
    server: Server, bodies: Bodies, cfg: ServiceBenchConfig, full: bool, ceiling: InProcess
) -> dict[str, Any]:
    """Rows 1-2, then, when ``full``, rows 3-5, the per-op table and (``cfg.profile``) rows 1-2
    again under py-spy."""
    requests = bodies.prepared(server.port)
    result = {"rss_start_mb": server.rss_bytes() / 2**20, **await throughput_rows(server, requests, cfg)}
    if not full:
        return result
    result |= await service_rows(server, requests, cfg, ceiling)
    exe = py_spy() if cfg.profile else None
    if exe is not None:
        recorder = Recorder(exe, server.pid, server.workdir / f"{server.name}.pyspy")
        await throughput_rows(server, requests, cfg)
        result["profile"] = recorder.stop()
    return result


def servers(store: Path, checkpoint: Path, cfg: ServiceBenchConfig, tmp: Path) -> list[tuple[Server, bool]]:
    """The servers to measure, in order, each with whether it runs every row (else rows 1-2)."""

    def service(name: str, env: dict[str, str]) -> Server:
        return Server.serve({"ATNL_MODEL_STORE": str(store), **env}, tmp, cfg.device, name)

    out = [(service("service", {}), True), (service("service, batching off", {"ATNL_BATCH_ENABLED": "false"}), False)]
    for settings in cfg.variants:
        out.append((service("service, " + ", ".join(settings), dict(s.split("=", 1) for s in settings)), False))
    out.append((Server.bare("bare FastAPI endpoint", checkpoint, cfg.device, 0, tmp), False))
    out.append((Server.bare("bare FastAPI endpoint, 1 torch thread", checkpoint, cfg.device, 1, tmp), False))
    return out


def run_service(checkpoint: Path, out: Path, cfg: ServiceBenchConfig, command: str, tmp: Path) -> Path:
    """Every row on every server; writes service.md and service.json to ``out``."""
    from service.model_runner import set_torch_threads
    from service.settings import Settings

    start = time.perf_counter()
    defaults = Settings(_env_file=None)  # the environment the servers get (they start in an empty directory)
    threads = set_torch_threads(defaults.torch_threads, defaults.inference_threads)  # as the server sets them
    store = tmp / "store"
    shutil.copytree(checkpoint, store / "bench")
    meta = read_meta(checkpoint)
    bodies = Bodies.of(load_dataset("mnist-5k"), int(meta["model_config"]["latent_dim"]))
    in_process = InProcess(store / "bench", bodies, cfg.device)
    ceiling = in_process.measure(cfg)
    results: dict[str, Any] = {}
    for server, full in servers(store, checkpoint, cfg, tmp):
        with running(server):
            results[server.name] = asyncio.run(measure_service(server, bodies, cfg, full, in_process))
    record = {
        "config": asdict(cfg),
        "checkpoint": {"family": meta.get("family"), "model_config": meta.get("model_config")},
        "torch_threads": threads,
        "settings": {k: v for k, v in defaults.model_dump().items() if k.startswith(("batch_", "torch_", "inference_"))},
        "other_load": "other work on this machine was not stopped; see the load average",
        "in_process": ceiling,
        "servers": results,
        "seconds": time.perf_counter() - start,
        "environment": {k: v for k, v in os.environ.items() if k.startswith("ATNL_") and "TOKEN" not in k},
    }
    body, checks = render(record)
    record["checks"] = checks
    title = "Service throughput and latency"
    return write_report(out, "service", title, command, hardware(cfg.device), body, record)


def resolve_checkpoint(checkpoint: Path | None, quick: bool, device: str, tmp: Path) -> Path:
    """The checkpoint to serve: the one given, else the store's active model, else a model of the
    default architecture trained for one epoch (``quick``: an 8-d one) and kept in the bench cache:
    speed depends on the architecture, not on how long it trained. It is trained again only when
    the cached one no longer loads."""
    from service.settings import get_settings
    from service.store import open_store

    if checkpoint is not None:
        return checkpoint
    store = open_store(get_settings())
    model_id = store.default_id()
    if model_id is not None:
        return store.checkpoint(model_id)  # the store's own folder, or this host's cached copy of an S3 one
    from benchmarks.cache import bench_cache_dir
    from models import CheckpointError, load_checkpoint
    from models.pipeline import train_to_checkpoint
    from models.training import TrainConfig

    cfg = TrainConfig(epochs=1, device=device, latent_dim=8 if quick else TrainConfig.latent_dim)
    cached = bench_cache_dir() / "service" / f"{cfg.family}-{cfg.dataset}-d{cfg.latent_dim}-1-epoch"
    try:
        load_checkpoint(cached)
    except (CheckpointError, OSError, TypeError, KeyError):  # missing, or written by an older models/
        train_to_checkpoint(cfg, cached, data=load_dataset(cfg.dataset), overwrite=True)
    return cached


# --- what benchmarks.soak takes from here


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def sample_requests(data: Any) -> dict[str, dict[str, Any]]:
    """One request body per op as httpx arguments, from real mnist-5k digits (5 per label for hallucinate)."""
    from service.answer_files import png_bytes

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
