"""Dynamic batching (service.batching) and cancel-on-disconnect (service.disconnect), on the
real app and the tiny checkpoint: concurrent requests share one forward and each gets its own
answer; a full queue is 503 with Retry-After; a client that leaves while its work is queued
costs no work; a hot swap never mixes models in a batch; batching off gives the same answers.

Where a backlog is needed, the model's batch thread is held at a gate (a threading.Event in
front of the real batch function) while real requests queue behind it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from prometheus_client import generate_latest

from benchmarks.servers import free_port
from models import load_checkpoint, read_meta
from models.checkpoint import save_checkpoint
from service.batching import Batcher, BatchPolicy, InferenceQueueFull
from service.main import create_app
from service.model_runner import ModelRunner, RunnerOptions, available_cpus, torch_threads
from tests.service.helpers import assert_problem, client_for
from tests.service.images import photo_jpeg_of, png_of

pytestmark = pytest.mark.anyio


class Gate:
    """Holds a batch function's thread until opened; records the images of every batch it lets through."""

    def __init__(self, batch_fn: Callable[[list[np.ndarray]], Any]) -> None:
        self.batch_fn = batch_fn
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[int]] = []

    def __call__(self, parts: list[np.ndarray]) -> Any:
        self.batches.append([len(p) for p in parts])
        self.entered.set()
        assert self.opened.wait(30), "the test never opened the gate"
        return self.batch_fn(parts)


def gate(app: Any, op: str = "encode") -> tuple[Gate, Batcher]:
    batcher = app.state.engine.current.batchers[op]
    held = Gate(batcher.batch_fn)
    batcher.batch_fn = held
    return held, batcher


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def files_of(*images: np.ndarray) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{k}.png", png_of(im), "image/png")) for k, im in enumerate(images)]


@contextlib.asynccontextmanager
async def app_client(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on ``settings`` (lifespan run) behind an httpx client."""
    async for client in client_for(settings):
        yield client


def counter(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_concurrent_encodes_share_a_forward_and_get_their_own_latents(client, digits, tiny_checkpoint) -> None:
    before = (await client.get("/metrics")).text
    held, _ = gate(client.app)
    first = asyncio.create_task(client.post("/v1/encode", files=files_of(digits[0][0]), data={"preprocess": "none"}))
    await until(held.entered.is_set)  # the first batch holds the model thread; the next ones queue
    images = [digits[k][1] for k in range(1, 7)]
    rest = [
        asyncio.create_task(client.post("/v1/encode", files=files_of(im, im[::-1]), data={"preprocess": "none"})) for im in images
    ]
    await until(lambda: client.app.state.engine.current.batchers["encode"].queued_images == 12)
    held.opened.set()
    answers = [await first, *[await t for t in rest]]
    assert [r.status_code for r in answers] == [200] * 7
    assert held.batches == [[1], [2] * 6]  # one forward for the six queued requests
    model = load_checkpoint(tiny_checkpoint)
    for r, im in zip(answers[1:], images, strict=True):
        with torch.inference_mode():
            want = model.encode(torch.from_numpy(np.stack([im, im[::-1]]))[:, None].float())
        got = np.asarray(r.json()["latents"])
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    after = (await client.get("/metrics")).text
    for name, grew in (("atnl_batch_images_count", 2), ("atnl_batch_images_sum", 13), ("atnl_batch_size_count", 7)):
        assert counter(after, name, op="encode") - counter(before, name, op="encode") == grew, name


async def test_a_bad_image_fails_its_request_alone(client, digits) -> None:
    held, batcher = gate(client.app)
    first = asyncio.create_task(client.post("/v1/encode", files=files_of(digits[1][0])))
    await until(held.entered.is_set)
    good = asyncio.create_task(client.post("/v1/encode", files=files_of(digits[2][0], digits[3][0])))
    truncated = png_of(digits[4][0])[:60]  # a header that passes, pixels that do not decode
    bad = asyncio.create_task(client.post("/v1/encode", files=[("files", ("t.png", truncated, "image/png"))]))
    await until(lambda: batcher.queued_images == 3)
    held.opened.set()
    assert (await first).status_code == 200 and len((await good).json()["latents"]) == 2
    assert_problem(await bad, 422, "files[0]")
    assert held.batches == [[1], [2, 1]]  # the good and the bad request shared one batch


async def test_batches_stop_at_max_images(settings, redis_conn, digits) -> None:
    async with app_client(settings.model_copy(update={"batch_max_images": 4})) as client:
        held, batcher = gate(client.app)
        one = files_of(digits[3][0])
        first = asyncio.create_task(client.post("/v1/encode", files=one, data={"preprocess": "none"}))
        await until(held.entered.is_set)
        rest, queued = [], 0
        for n in [1, 2, 2, 3]:  # in arrival order: 1 + 2 fit, the next 2 would make 5
            rest.append(asyncio.create_task(client.post("/v1/encode", files=one * n, data={"preprocess": "none"})))
            queued += n
            await until(lambda q=queued: batcher.queued_images == q)
        held.opened.set()
        assert all(r.status_code == 200 for r in [await first, *[await t for t in rest]])
        assert held.batches == [[1], [1, 2], [2], [3]]


async def test_full_queue_is_503_with_retry_after(settings, redis_conn, digits) -> None:
    tight = settings.model_copy(update={"batch_max_queued_images": 2, "batch_retry_after_seconds": 7})
    async with app_client(tight) as client:
        held, batcher = gate(client.app)
        one = files_of(digits[4][0])
        running = asyncio.create_task(client.post("/v1/encode", files=one))
        await until(held.entered.is_set)
        queued = [asyncio.create_task(client.post("/v1/encode", files=one)) for _ in range(2)]
        await until(lambda: batcher.queued_images == 2)
        refused = await client.post("/v1/encode", files=one)
        body = assert_problem(refused, 503, "ATNL_BATCH_MAX_QUEUED_IMAGES")
        assert refused.headers["retry-after"] == "7" and body["title"] == "Inference queue full"
        held.opened.set()
        assert [r.status_code for r in [await running, *[await t for t in queued]]] == [200] * 3
        assert (await client.post("/v1/encode", files=one)).status_code == 200  # room again


async def test_batching_off_gives_the_same_answers(settings, redis_conn, digits) -> None:
    latents = [[0.6, 0.8] + [0.0] * 6, [0.0, 0.6, 0.0, 0.8] + [0.0] * 4]
    answers = []
    for enabled in (True, False):
        async with app_client(settings.model_copy(update={"batch_enabled": enabled})) as client:
            enc = client.post("/v1/encode", files=files_of(digits[5][0], digits[6][0]))
            dec = client.post("/v1/decode", json={"latents": latents})
            answers.append([r.json() for r in await asyncio.gather(enc, dec)])
            assert not enabled or client.app.state.engine.current.batchers["encode"].queued_images == 0
    (enc_on, dec_on), (enc_off, dec_off) = answers
    np.testing.assert_allclose(enc_on["latents"], enc_off["latents"], atol=1e-6)
    assert dec_on == dec_off and len(dec_on["images"]) == 2


def perturbed_copy(store: Path, source: str, target: str) -> None:
    """Model ``target``: ``source`` with its encoder's weights changed, so it encodes differently."""
    model = load_checkpoint(store / source)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    meta = {k: v for k, v in read_meta(store / source).items() if k not in ("content_hash", "created_at")}
    save_checkpoint(model, meta, store / target)


async def test_hot_swap_never_mixes_models_in_a_batch(client, settings, digits) -> None:
    perturbed_copy(settings.model_store, "tiny", "tiny-b")
    models = {m: load_checkpoint(settings.model_store / m) for m in ("tiny", "tiny-b")}
    images = [digits[k % 10][k // 10] for k in range(30)]

    async def encode(im: np.ndarray) -> tuple[np.ndarray, httpx.Response]:
        return im, await client.post("/v1/encode", files=files_of(im), data={"preprocess": "none"})

    async def swaps() -> None:
        for target in ["tiny-b", "tiny", "tiny-b", "tiny"]:
            assert (await client.post(f"/v1/models/{target}/activate", json={})).status_code == 200
            await asyncio.sleep(0.01)

    *answers, _ = await asyncio.gather(*(encode(im) for im in images), swaps())
    seen = set()
    for im, r in answers:
        assert r.status_code == 200, r.text
        model_id = r.json()["model_id"]
        seen.add(model_id)
        with torch.inference_mode():
            want = models[model_id].encode(torch.from_numpy(im)[None, None].float()).numpy()
        np.testing.assert_allclose(r.json()["latents"], want, atol=1e-5, err_msg=f"not {model_id}'s latent")
    assert seen <= {"tiny", "tiny-b"}


async def test_batcher_drops_a_cancelled_waiter() -> None:
    """The queue itself: a waiter cancelled before its batch starts is never run; the others are."""
    entered, opened, ran = threading.Event(), threading.Event(), []

    def double(parts: list[np.ndarray]) -> list[np.ndarray]:
        entered.set()
        opened.wait(10)
        ran.append([p.tolist() for p in parts])
        return [2 * p for p in parts]

    async def in_thread(fn: Any, parts: list[np.ndarray]) -> Any:
        return await asyncio.to_thread(fn, parts)

    batcher = Batcher("encode", double, BatchPolicy(8, 0.0, 3, 1), in_thread)
    first = asyncio.create_task(batcher.submit(np.array([1.0])))
    await until(entered.is_set)  # the first batch took it and waits at the gate
    doomed = asyncio.create_task(batcher.submit(np.array([2.0])))
    kept = asyncio.create_task(batcher.submit(np.array([3.0, 4.0])))
    await until(lambda: batcher.queued_images == 3)
    with pytest.raises(InferenceQueueFull):
        await batcher.submit(np.array([5.0]))
    doomed.cancel()
    opened.set()
    assert (await first).tolist() == [2.0] and (await kept).tolist() == [6.0, 8.0]
    assert doomed.cancelled() and ran == [[[1.0]], [[3.0, 4.0]]]
    assert batcher.queued_images == 0


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[int]:
    """``app`` behind a real uvicorn server on a loopback port, in this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done())
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def send_and_leave(port: int, request: httpx.Request) -> asyncio.StreamWriter:
    """Write ``request`` on a raw connection and return it open (closing it is leaving)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    writer.write(head.encode() + request.read())
    await writer.drain()
    return writer


async def test_a_client_that_leaves_costs_no_work(settings, redis_conn, digits) -> None:
    app = create_app(settings.model_copy(update={"inference_threads": 2}))
    async with uvicorn_serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        engine = app.state.engine
        before = (await client.get("/metrics")).text
        held, batcher = gate(app)  # the batch thread holds one of the two inference threads
        encode = httpx.Request(
            "POST", f"http://127.0.0.1:{port}/v1/encode", files=files_of(digits[7][0]), data={"preprocess": "none"}
        )
        running = asyncio.create_task(client.post("/v1/encode", files=files_of(digits[8][0])))
        await until(held.entered.is_set)

        def left() -> float:
            return counter(generate_latest().decode(), "atnl_requests_total", method="POST", route="/v1/encode", status="499")

        gone = left()
        leaver = await send_and_leave(port, encode)  # waits in the batch queue, then leaves
        await until(lambda: batcher.queued_images == 1)
        staying = asyncio.create_task(client.post("/v1/encode", files=files_of(digits[9][0])))
        await until(lambda: batcher.queued_images == 2)
        leaver.close()
        await until(lambda: left() == gone + 1)
        photo = httpx.Request(
            "POST", f"http://127.0.0.1:{port}/v1/encode", files=[("files", ("p.jpg", photo_jpeg_of(digits[7][1]), "image/jpeg"))]
        )
        async with engine._limiter:  # the other inference thread, held: a large upload waits for it to be decoded
            leaver = await send_and_leave(port, photo)
            await until(lambda: engine._limiter.statistics().tasks_waiting == 1)
            leaver.close()
            await until(lambda: left() == gone + 2)
        held.opened.set()
        assert (await running).status_code == 200 and (await staying).status_code == 200
        assert held.batches == [[1], [1]]  # the staying request ran alone: neither leaver's work ran
        after = (await client.get("/metrics")).text
        decoded = counter(after, "atnl_batch_size_count", op="encode") - counter(before, "atnl_batch_size_count", op="encode")
        assert decoded == 3  # the second leaver's images were never even decoded


def test_torch_threads_times_inference_threads_fit_the_cores() -> None:
    cpus = available_cpus()
    for inference_threads in (1, 2, 4, 64):
        n = torch_threads(0, inference_threads)
        assert n >= 1 and (n * inference_threads <= cpus or n == 1)
    assert torch_threads(3, 4) == 3  # set explicitly: taken as given


@pytest.mark.parametrize("autocast", ["bf16", "fp16"])
def test_autocast_runs_on_cpu(tiny_checkpoint, digits, autocast) -> None:
    model = load_checkpoint(tiny_checkpoint)
    runner = ModelRunner(model, torch.device("cpu"), RunnerOptions(autocast=autocast))
    images = np.stack([digits[k][0] for k in range(10)])[:, None]  # (10, 1, 28, 28)
    latents = runner.encode(images)
    assert latents.dtype == np.float32 and np.allclose(np.linalg.norm(latents, axis=1), 1, atol=2e-2)
    with torch.inference_mode():
        exact = model.encode(torch.from_numpy(images)).numpy()
    assert np.abs(latents - exact).max() < 0.1
    frames = runner.decode(latents)
    assert frames.dtype == np.float32 and frames.shape == (10, 1, 28, 28) and 0 <= frames.min() and frames.max() <= 1
