"""The Python client (clients/python, ``atnl_client``) against a real `atnl serve` on the tiny model
(tests/clients/conftest.py): every operation the server documents has a method; images go in as
paths, bytes, PIL images and arrays, as npy where the server's document offers it and as PNG
otherwise; pins, problems and retries behave as docs/API.md says; a job a real worker trains is
followed to its end (e2e). Retries are driven by scripted answers (httpx.MockTransport): a real
server does not answer 503 on cue."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import numpy as np
import pytest
from atnl_client import (
    OPERATIONS,
    Activation,
    AsyncClient,
    Client,
    Conflict,
    Disagreement,
    Health,
    InvalidInput,
    ModelMismatch,
    NotFound,
    NotReady,
    ProblemError,
    RetryPolicy,
    Unauthorized,
    Unavailable,
)
from atnl_client.calls import NPY
from PIL import Image

from benchmarks.servers import Process
from tests.clients.conftest import MODEL_ID, Served
from tests.service.archives import bar_members, zip_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""Real MNIST test digits, 28x28 grey PNGs: 0.png .. 9.png, 0b.png .. 9b.png."""
LATENT_DIM = 8
"""The tiny checkpoint's latent_dim (tests/conftest.py TINY_TRAIN)."""
OTHER_MODEL = "another-model"


def digit(name: str) -> Path:
    return EXAMPLES / f"{name}.png"


def pixels(name: str) -> np.ndarray:
    """(28, 28) uint8 of an example digit."""
    return np.asarray(Image.open(digit(name)))


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(served.url, token=served.token) as c:
        yield c


def test_every_operation_of_the_served_document_has_a_client_method(served: Served) -> None:
    document = httpx.get(f"{served.url}/openapi.json").json()
    operations = {op["operationId"]: path for path, ops in document["paths"].items() for op in ops.values()}
    api = {op for op, path in operations.items() if path.startswith("/v1/") or path in ("/healthz", "/readyz")}
    assert len(api) >= 19
    assert not sorted(api - set(OPERATIONS)), "operations without a client method"
    assert not sorted(set(OPERATIONS) - set(operations)), "client methods of operations the server no longer has"
    for method in OPERATIONS.values():
        assert callable(getattr(Client, method, None)), method
        assert inspect.iscoroutinefunction(getattr(AsyncClient, method, None)), method


def test_the_async_client_has_the_same_methods_as_the_sync_one() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(AsyncClient) == public(Client)


def test_encode_takes_paths_bytes_pil_images_and_arrays(client: Client) -> None:
    paths = [digit("0"), digit("5")]
    by_path = client.encode(paths)
    assert by_path.model_id == MODEL_ID
    assert by_path.latents.dtype == np.float32 and by_path.latents.shape == (2, LATENT_DIM)
    np.testing.assert_allclose(np.linalg.norm(by_path.latents, axis=1), 1.0, atol=1e-5)
    for same in (
        client.encode([p.read_bytes() for p in paths]),
        client.encode([Image.open(p) for p in paths]),
        client.encode([pixels("0"), pixels("5")], preprocess="model"),  # arrays as PNG files, prepared as files are
    ):
        np.testing.assert_allclose(same.latents, by_path.latents, atol=1e-6)
    np.testing.assert_allclose(client.encode(str(paths[0])).latents, by_path.latents[:1], atol=1e-6)

    mixed = client.encode([paths[0], paths[1].read_bytes(), Image.open(paths[0]), pixels("5")])  # not all arrays: files
    np.testing.assert_allclose(mixed.latents, by_path.latents[[0, 1, 0, 1]], atol=1e-6)
    assert client.encode(pixels("3")[..., None]).latents.shape == (1, LATENT_DIM)  # H×W×C
    assert client.encode(np.stack([pixels("3"), pixels("7")])[:, None] / 255.0).latents.shape == (2, LATENT_DIM)  # N×C×H×W
    assert client.encode(EXAMPLES / "photo_of_a_five.jpg", preprocess="digits").latents.shape == (1, LATENT_DIM)

    with pytest.raises(ValueError, match="N×C×H×W"):
        client.encode(np.zeros((1, 1, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        client.encode(np.full((28, 28), 2.0))
    with pytest.raises(TypeError, match="an image is"):
        client.encode(42)  # type: ignore[arg-type]


class Recording(httpx.BaseTransport):
    """A real HTTP transport that notes (path, Content-Type, Accept) of each request; ``strip_npy``:
    the OpenAPI document comes back without application/x-npy, as an older server's would."""

    def __init__(self, strip_npy: bool) -> None:
        self.inner = httpx.HTTPTransport()
        self.strip_npy = strip_npy
        self.sent: list[tuple[str, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.path, request.headers.get("content-type", ""), request.headers.get("accept", "")))
        response = self.inner.handle_request(request)
        if not (self.strip_npy and request.url.path == "/openapi.json"):
            return response
        body = response.read().replace(NPY.encode(), b"application/x-none")
        response.close()
        return httpx.Response(response.status_code, headers={"content-type": "application/json"}, content=body)

    def close(self) -> None:
        self.inner.close()

    def media(self, path: str) -> list[str]:
        return [content_type.split(";")[0] for p, content_type, _ in self.sent if p == path]


@pytest.mark.parametrize("document", ["as served", "without npy"])
def test_arrays_take_the_binary_path_where_the_document_offers_it(served: Served, document: str) -> None:
    transport = Recording(strip_npy=document == "without npy")
    images = np.stack([pixels("0"), pixels("5")])[:, None]  # (2, 1, 28, 28) uint8: the model's shape
    with Client(served.url, transport=transport) as client:
        caps = client.capabilities()
        encoded = client.encode(images)
        as_given = client.encode(images, preprocess="none")  # PNG files, only resized (28 -> 28): the same input
        decoded = client.decode(encoded.latents, model_id=encoded.model_id)
        arrays = client.decode_array(encoded.latents)
    if document == "without npy":
        assert not caps.npy_bodies and not caps.npy_answers
    npy_encode, npy_decode = "/v1/encode" in caps.npy_bodies, "/v1/decode" in caps.npy_bodies
    assert transport.media("/v1/encode") == [NPY if npy_encode else "multipart/form-data", "multipart/form-data"]
    assert transport.media("/v1/decode") == [NPY if npy_decode else "application/json"] * 2
    assert encoded.model_id == decoded.model_id == MODEL_ID
    np.testing.assert_allclose(encoded.latents, as_given.latents, atol=1e-5)
    assert arrays.dtype == np.float32 and arrays.shape == (2, 1, 28, 28)
    assert 0.0 <= arrays.min() and arrays.max() <= 1.0
    for image, array in zip(decoded.images, arrays, strict=True):  # the same pixels either way
        assert np.array_equal(np.asarray(image), (array[0] * 255.0 + 0.5).astype(np.uint8))


def test_decode_round_trip(client: Client) -> None:
    z = client.encode([digit("1"), digit("7")])
    decoded = client.decode(z.latents, model_id=z.model_id)
    assert decoded.model_id == MODEL_ID and len(decoded.images) == 2
    assert all(image.size == (28, 28) and image.mode == "L" for image in decoded.images)
    assert len(client.decode(z.latents.tolist()).images) == 2  # a list of vectors
    assert len(client.decode(z.latents[0]).images) == 1  # one vector
    arrays = client.decode_array(z.latents)
    assert arrays.shape == (2, 1, 28, 28) and arrays.dtype == np.float32
    assert client.encode(arrays).latents.shape == (2, LATENT_DIM)  # the model's own pictures go back in
    with pytest.raises(ValueError, match="N×d"):
        client.decode(np.zeros((2, 2, LATENT_DIM)))


def test_interpolate_answers_frames_and_omegas(client: Client) -> None:
    morph = client.interpolate(digit("0"), digit("5"), steps=6)
    assert morph.model_id == MODEL_ID and morph.method == "slerp"
    assert len(morph.frames) == 6 and all(frame.size == (28, 28) for frame in morph.frames)
    assert morph.omegas[0] == 0.0 and morph.omegas[-1] == 1.0 and morph.omegas == sorted(morph.omegas)
    lerp = client.interpolate(pixels("0"), digit("5").read_bytes(), method="lerp")
    assert lerp.method == "lerp" and len(lerp.frames) == len(lerp.omegas) == 8  # ATNL_DEFAULT_STEPS
    with pytest.raises(ValueError, match="start: one image"):
        client.interpolate([digit("0"), digit("1")], digit("5"))


def test_hallucinate_answers_labelled_images(client: Client) -> None:
    files = [digit(name) for name in ("3", "3b", "7", "7b")]
    tiny = client.models().find(MODEL_ID)
    assert tiny is not None
    labels = tiny.labels
    made = client.hallucinate(files, [3, 3, 7, 7], n=6, seed=1)
    assert made.model_id == MODEL_ID and made.strategy == "restyle"
    assert made.self_check.checked and made.self_check.filter == "model"
    assert len(made.images) == 6 - made.self_check.dropped  # the tiny model may read back few of its own
    assert all(item.label in labels and item.read == item.label for item in made.images)
    assert all(isinstance(d, Disagreement) and d.given in ("3", "7") for d in made.disagreements)
    assert made.labels == [item.label for item in made.images]

    kept = client.hallucinate(files, "3,3,7,7", per_class=1, strategy="same", filter="none")  # one field, comma-separated
    assert kept.strategy == "same" and kept.self_check.filter == "none" and kept.self_check.dropped == 0
    assert len(kept.images) >= 2 and {item.label for item in kept.images} <= set(labels)
    assert all(isinstance(item.image, Image.Image) and item.image.size == (28, 28) for item in kept.images)
    assert kept.self_check.flagged == sum(item.read != item.label for item in kept.images)


def test_a_pin_on_another_model_raises_model_mismatch(client: Client) -> None:
    with pytest.raises(ModelMismatch) as caught:
        client.encode(digit("0"), model_id=OTHER_MODEL)
    mismatch = caught.value
    assert isinstance(mismatch, ProblemError) and isinstance(mismatch, Conflict)
    assert mismatch.status == 409 and mismatch.title == "Model mismatch"
    assert mismatch.active == MODEL_ID and mismatch.requested == OTHER_MODEL
    z = client.encode(digit("0"), model_id=MODEL_ID).latents  # the right pin passes
    for call in (
        lambda: client.decode(z, model_id=OTHER_MODEL),
        lambda: client.decode_array(z, model_id=OTHER_MODEL),
        lambda: client.encode(pixels("0")[None, None], model_id=OTHER_MODEL),
        lambda: client.interpolate(digit("0"), digit("5"), model_id=OTHER_MODEL),
        lambda: client.hallucinate([digit("3"), digit("7")], ["3", "7"], n=2, model_id=OTHER_MODEL),
    ):
        with pytest.raises(ModelMismatch) as caught:
            call()
        assert caught.value.active == MODEL_ID


def test_invalid_input_raises_a_problem_naming_the_field(client: Client) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.decode(np.full((1, LATENT_DIM + 1), 0.1, np.float32))
    problem = caught.value
    assert problem.status == 422 and problem.field == "latents" and problem.title == "Invalid input"
    assert problem.body["instance"] == "/v1/decode" and problem.detail
    with pytest.raises(InvalidInput) as caught:
        client.interpolate(digit("0"), digit("5"), steps=1)
    assert caught.value.status == 422 and caught.value.errors  # a validation error lists each problem
    with pytest.raises(InvalidInput) as caught:
        client.train(epochs=1, no_such_field=1)
    assert caught.value.status == 422


def test_models_activation_health_auth_and_test_images(client: Client) -> None:
    models = client.models()
    assert models.active == MODEL_ID and models.replica.loaded == MODEL_ID and models.replica.store == "local"
    tiny = models.find(MODEL_ID)
    assert tiny is not None and tiny.labels == [str(k) for k in range(10)] and tiny.image_shape == (1, 28, 28)
    assert client.activate(MODEL_ID) == Activation(MODEL_ID, MODEL_ID)
    assert client.health() == Health("ok", MODEL_ID) and client.ready() is True
    assert client.auth().token_required is True
    samples = client.samples(per_label=1)
    assert samples.model_id == MODEL_ID and [s.label for s in samples.samples] == samples.labels
    picture = client.sample(samples.samples[0].index)
    assert picture.size == (28, 28) and np.array_equal(np.asarray(picture), np.asarray(samples.samples[0].image))
    mapped = client.latent_map()
    assert mapped.model_id == MODEL_ID and mapped.points and mapped.centres is not None
    assert "atnl_requests_total" in client.metrics()
    with pytest.raises(NotFound) as caught:
        client.activate("no-such-model")
    assert caught.value.status == 404
    with pytest.raises(NotFound):
        client.get_job("no-such-job")


def test_upload_list_describe_and_delete_a_dataset(client: Client, served: Served, tmp_path: Path) -> None:
    archive = zip_of(bar_members(["0", "1", "2"], per_label=2))
    record = client.upload_dataset(archive, filename="bars.zip")
    assert record.name == "bars.zip" and record.labels == ["0", "1", "2"] and record.images == 6
    assert record.counts == {"0": 2, "1": 2, "2": 2} and record.image_shape == (3, 24, 24)
    path = tmp_path / "bars-again.zip"
    path.write_bytes(archive)
    by_path = client.upload_dataset(path)
    assert by_path.name == "bars-again.zip" and by_path.id != record.id
    assert {record.id, by_path.id} <= {d.id for d in client.datasets()}
    assert client.dataset(record.id) == record
    client.delete_dataset(record.id)
    client.delete_dataset(by_path.id)
    with pytest.raises(NotFound) as caught:
        client.dataset(record.id)
    assert caught.value.status == 404 and caught.value.title == "Data set not found"
    assert record.id not in {d.id for d in client.datasets()}
    with Client(served.url) as anonymous:  # no token: refused before the body is read
        for call in (lambda: anonymous.upload_dataset(archive), lambda: anonymous.train(epochs=1)):
            with pytest.raises(Unauthorized) as refused:
                call()
            assert refused.value.status == 401


@pytest.mark.anyio
async def test_the_async_client_encodes_decodes_and_lists_models(served: Served) -> None:
    async with AsyncClient(served.url, token=served.token) as client:
        models = await client.models()
        assert models.active == MODEL_ID and models.find() == models.find(MODEL_ID)
        assert await client.ready() is True
        encoded = await client.encode([digit("0"), pixels("5")[None, None]])
        assert encoded.model_id == MODEL_ID and encoded.latents.shape == (2, LATENT_DIM)
        decoded = await client.decode(encoded.latents, model_id=encoded.model_id)
        assert len(decoded.images) == 2
        assert (await client.encode(np.stack([pixels("1"), pixels("2")])[:, None])).latents.shape == (2, LATENT_DIM)
        with pytest.raises(ModelMismatch) as caught:
            await client.encode(digit("0"), model_id=OTHER_MODEL)
        assert caught.value.status == 409 and caught.value.active == MODEL_ID


# Retries, on scripted answers.


def problem(status: int, title: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/problem+json", **({"retry-after": retry_after} if retry_after else {})}
    body = {"type": "about:blank", "title": title, "status": status, "detail": "scripted", "instance": "/"}
    return httpx.Response(status, headers=headers, json=body)


HEALTHY = {"status": "ok", "model_id": "m"}
Answer = httpx.Response | Exception


class Script:
    """Answers each request with the next of ``answers`` (the last one again once they run out)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, retries: int = 3, backoff: float | None = None) -> Client:
        client = Client("http://atnl.test", token="t", retries=retries, transport=httpx.MockTransport(self))
        if backoff is not None:
            client.retry = RetryPolicy(retries, backoff_first=backoff)
        return client


def test_a_503_is_retried_after_its_retry_after() -> None:
    script = Script(problem(503, "Model not ready", "1"), problem(503, "Model not ready", "1"), httpx.Response(200, json=HEALTHY))
    started = time.monotonic()
    with script.client() as client:
        assert client.health() == Health("ok", "m")
    assert len(script.requests) == 3 and time.monotonic() - started >= 2.0
    assert all(r.headers["authorization"] == "Bearer t" for r in script.requests)


def test_retries_are_bounded_and_the_last_503_is_raised() -> None:
    script = Script(problem(503, "Training queue full", "0"))
    with script.client(retries=2) as client, pytest.raises(Unavailable) as caught:
        client.train(epochs=1)  # a POST: a 503 means nothing was done, so it is sent again too
    assert len(script.requests) == 3 and caught.value.status == 503 and caught.value.retry_after == 0.0
    script = Script(problem(503, "Model not ready"))
    with script.client(retries=3, backoff=0.01) as client, pytest.raises(NotReady):
        client.models()  # no Retry-After: the backoff
    assert len(script.requests) == 4


def test_a_4xx_is_never_retried_and_ready_reads_a_503() -> None:
    for status, title, kind in ((422, "Invalid input", InvalidInput), (409, "Model mismatch", ModelMismatch)):
        script = Script(problem(status, title, "0"))
        with script.client() as client, pytest.raises(kind):
            client.health()
        assert len(script.requests) == 1
    script = Script(problem(503, "Model not ready", "0"))
    with script.client() as client:
        assert client.ready() is False
    assert len(script.requests) == 1


def test_a_connection_error_is_retried_on_a_get_only() -> None:
    def refused() -> httpx.ConnectError:
        return httpx.ConnectError("connection refused")

    script = Script(refused(), httpx.Response(200, json=HEALTHY))
    with script.client(backoff=0.01) as client:
        assert client.health().status == "ok"
    assert len(script.requests) == 2
    script = Script(refused())
    with script.client(backoff=0.01) as client, pytest.raises(httpx.ConnectError):
        client.train(epochs=1)
    assert len(script.requests) == 1


def test_an_error_answer_that_is_not_a_problem_is_one_too() -> None:
    script = Script(httpx.Response(502, text="<html>bad gateway</html>"))
    with script.client() as client, pytest.raises(ProblemError) as caught:
        client.health()
    assert caught.value.status == 502 and "bad gateway" in caught.value.detail and len(script.requests) == 1


def test_the_retry_policy_caps_its_backoff_and_long_retry_afters() -> None:
    policy = RetryPolicy(retries=6)
    assert [policy.backoff(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    request = httpx.Request("GET", "http://atnl.test/")
    busy: Callable[[str | None], httpx.Response] = lambda after: problem(503, "Inference queue full", after)  # noqa: E731
    assert policy.after_answer(0, busy("3")) == 3.0
    assert policy.after_answer(2, busy(None)) == 2.0
    assert policy.after_answer(0, busy("3600")) is None  # longer than MAX_RETRY_AFTER_SECONDS: raised at once
    assert policy.after_answer(6, busy("1")) is None  # retries spent
    assert policy.after_answer(0, httpx.Response(429, request=request)) is None
    assert policy.after_error(0, "GET") == 0.5 and policy.after_error(0, "POST") is None
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


@pytest.mark.anyio
async def test_the_async_client_retries_a_503_too() -> None:
    script = Script(problem(503, "Model not ready", "0"), httpx.Response(200, json=HEALTHY))
    async with AsyncClient("http://atnl.test", transport=httpx.MockTransport(script)) as client:
        assert await client.health() == Health("ok", "m")
        assert len(script.requests) == 2


# Training, on a real worker.

BARS_TRAIN = {"epochs": 2, "batch_size": 10, "latent_dim": LATENT_DIM, "realism_weight": 0.0, "threads": 1}
"""Seconds on a busy 2-core machine, on 30 small pictures: what is tested is the client's path, not the model."""


@pytest.mark.e2e
def test_a_job_trained_by_a_worker_is_followed_to_its_end(served: Served, client: Client) -> None:
    bars = client.upload_dataset(zip_of(bar_members(["0", "1", "2"], per_label=10, side=16)), filename="bars.zip")
    worker = Process.worker(served.env, served.workdir).start()
    seen: list[dict] = []
    try:
        job = client.train(dataset=f"upload:{bars.id}", **BARS_TRAIN)
        assert job.status == "queued" and job.status_url == f"/v1/jobs/{job.id}"
        assert job.wait(progress=seen.append, poll=0.2, timeout=240) is job
    finally:
        worker.stop(timeout=15)
    assert job.status == "finished", (job.error, worker.log_tail())
    assert job.model_id and job.model_id in {m.id for m in client.models().models}
    assert seen and seen[-1] == job.progress and seen[-1]["phase"] == "done", seen
    assert any(p.get("epoch") == BARS_TRAIN["epochs"] and isinstance(p.get("loss"), float) for p in seen), seen
    assert all(a != b for a, b in pairwise(seen))  # each one new
    assert client.get_job(job.id).model_id == job.model_id
    with pytest.raises(Conflict) as caught:
        job.cancel()
    assert caught.value.status == 409 and caught.value.body["job_status"] == "finished"
    client.delete_dataset(bars.id)
