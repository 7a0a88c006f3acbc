"""The coordinator (service/engine.py): which model is active, how a swap lands, following the
store's ACTIVE pointer, and the checks it makes before any work (steps, images asked of
hallucinate; docs/API.md §2, §4, §6). In process on copies of the real tiny checkpoint, then
through the app with requests racing the swaps."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.engine import Engine
from service.errors import InvalidInput, ModelNotFound, ModelNotReady
from service.following import follow
from service.loaded_model import HallucinationPlan, Uploads
from service.settings import Settings
from service.store import ModelStore
from tests.service.helpers import assert_problem
from tests.service.images import noisy_png_of, png_of

pytestmark = pytest.mark.anyio


def uploads_of(*images: np.ndarray) -> Uploads:
    return Uploads([png_of(im) for im in images], [f"files[{k}]" for k in range(len(images))])


def plan(**given) -> HallucinationPlan:
    defaults = {
        "per_class": None,
        "n": None,
        "strategy": None,
        "seed": 0,
        "preprocess": "digits",
        "fmt": "json",
        "filter": "none",
    }
    return HallucinationPlan(**{**defaults, **given})


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
def store(store_dir: Path) -> ModelStore:
    """The store of ``settings`` with ``tiny`` and its copy ``tiny-b``; no ACTIVE pointer yet."""
    shutil.copytree(store_dir / "tiny", store_dir / "tiny-b")
    return ModelStore(store_dir)


@pytest.fixture
async def engine(settings: Settings, store: ModelStore) -> Engine:
    return Engine(settings, store)


async def test_before_the_first_activate_there_is_no_model(engine: Engine, digits) -> None:
    assert not engine.ready
    with pytest.raises(ModelNotReady):
        engine.current  # noqa: B018
    with pytest.raises(ModelNotReady):
        await engine.encode(uploads_of(digits[0][0]), preprocess="digits")


async def test_activate_loads_the_model_then_points_active_at_it(engine: Engine, store: ModelStore, digits) -> None:
    loaded = await engine.activate("tiny")
    assert engine.ready and engine.current is loaded and loaded.id == "tiny"
    assert store.active_id() == "tiny"
    assert set(loaded.batchers) == {"encode", "decode"}
    encoded = await engine.encode(uploads_of(digits[3][0], digits[4][0]), preprocess="digits")
    assert encoded.model_id == "tiny" and encoded.latents.shape == (2, loaded.latent_dim)


async def test_activating_the_current_model_again_loads_nothing_and_mends_the_pointer(engine: Engine, store: ModelStore) -> None:
    first = await engine.activate("tiny", write_pointer=False)
    assert store.active_id() is None
    again = await engine.activate("tiny")
    assert again is first and store.active_id() == "tiny"


async def test_a_model_that_cannot_be_loaded_changes_nothing(engine: Engine, store: ModelStore) -> None:
    serving = await engine.activate("tiny")
    shutil.copytree(store.root / "tiny", store.root / "broken")
    (store.root / "broken" / "model.safetensors").write_bytes(b"not weights")
    for model_id, error in (("nope", ModelNotFound), ("broken", ModelNotFound), ("../tiny", InvalidInput)):
        with pytest.raises(error):
            await engine.activate(model_id)
        assert engine.current is serving and store.active_id() == "tiny"


async def test_a_swap_gives_new_requests_the_new_model_and_its_own_batch_queues(engine: Engine, digits) -> None:
    old = await engine.activate("tiny")
    new = await engine.activate("tiny-b")
    assert engine.current is new and new.id == "tiny-b"
    assert all(new.batchers[op] is not old.batchers[op] for op in ("encode", "decode"))
    assert (await engine.encode(uploads_of(digits[1][0]), preprocess="digits")).model_id == "tiny-b"
    # A request that took the old model before the swap finishes on it.
    assert old.encode(uploads_of(digits[1][0]), "digits", engine.image_policy).model_id == "tiny"


async def test_steps_are_checked_against_their_bounds(engine: Engine, settings: Settings, digits) -> None:
    await engine.activate("tiny")
    pair = uploads_of(digits[0][0], digits[5][0])
    for steps in (1, settings.max_steps + 1):
        with pytest.raises(InvalidInput) as caught:
            await engine.interpolate(pair, steps, "slerp", "digits", "json")
        assert caught.value.extra["field"] == "steps" and "ATNL_MAX_STEPS" in caught.value.detail
    morph = await engine.interpolate(pair, None, "slerp", "digits", "json")  # left out: ATNL_DEFAULT_STEPS frames
    assert len(morph.pngs) == len(morph.omegas) == settings.default_steps
    assert len((await engine.interpolate(pair, settings.max_steps, "slerp", "digits", "png")).omegas) == settings.max_steps


async def test_hallucinate_may_ask_for_at_most_max_hallucinate_n_images(settings: Settings, store: ModelStore, digits) -> None:
    engine = Engine(settings.model_copy(update={"max_hallucinate_n": 5}), store)
    lm = await engine.activate("tiny")
    examples, labels = uploads_of(digits[0][0], digits[9][0]), ["0", "9"]
    for asked, field in ((plan(n=6), "n"), (plan(per_class=1), "per_class")):  # per_class 1: one for each of 10 labels
        with pytest.raises(InvalidInput) as caught:
            await engine.hallucinate(examples, labels, asked)
        assert caught.value.extra["field"] == field and "ATNL_MAX_HALLUCINATE_N" in caught.value.detail
    made = await engine.hallucinate(examples, labels, plan(n=5))
    assert made.model_id == lm.id and 0 < len(made.pngs) <= 5


async def test_follow_store_serves_what_the_pointer_names(settings: Settings, store: ModelStore) -> None:
    engine = Engine(settings, store)
    following = asyncio.create_task(follow(engine))
    try:
        await until(lambda: engine.ready)
        assert engine.current.id == "tiny-b" == store.active_id()  # no pointer: the newest, then pointed at
        store.set_active("tiny")
        await until(lambda: engine.current.id == "tiny")
        shutil.copytree(store.root / "tiny", store.root / "broken")
        (store.root / "broken" / "model.safetensors").write_bytes(b"not weights")
        store.set_active("broken")
        await asyncio.sleep(5 * settings.store_poll_seconds)
        assert engine.current.id == "tiny" and not following.done()  # a bad checkpoint does not stop the loop
        store.set_active("tiny-b")
        await until(lambda: engine.current.id == "tiny-b")
    finally:
        following.cancel()


# --- through the app: swaps racing requests -----------------------------------------------------------


async def test_hot_swap_under_concurrent_requests_loses_none(client, settings, digits) -> None:
    shutil.copytree(settings.model_store / "tiny", settings.model_store / "tiny-b")
    image = png_of(digits[6][0])
    pair = {"start": ("a.png", image, "image/png"), "end": ("b.png", png_of(digits[8][0]), "image/png")}

    async def encode():
        return await client.post("/v1/encode", files=[("files", ("a.png", image, "image/png"))])

    async def interpolate():
        return await client.post("/v1/interpolate", files=pair, data={"steps": "4"})

    async def swaps():
        out = []
        for target in ["tiny-b", "tiny", "tiny-b", "tiny", "tiny-b"]:
            out.append(await client.post(f"/v1/models/{target}/activate", json={}))
            await asyncio.sleep(0)
        return out

    requests = [encode() if k % 2 else interpolate() for k in range(40)]
    *answers, swap_answers = await asyncio.gather(*requests, swaps())
    assert [r.status_code for r in answers] == [200] * 40
    assert {r.json()["model_id"] for r in answers} <= {"tiny", "tiny-b"}
    assert [r.status_code for r in swap_answers] == [200] * 5
    assert swap_answers[-1].json() == {"active": "tiny-b", "previous": "tiny"}
    assert (await client.get("/v1/models")).json()["active"] == "tiny-b"
    assert ModelStore(settings.model_store).active_id() == "tiny-b"


async def test_api_follows_the_active_pointer(client, settings) -> None:
    shutil.copytree(settings.model_store / "tiny", settings.model_store / "from-worker")
    ModelStore(settings.model_store).set_active("from-worker")  # what a job with activate: true does
    for _ in range(50):
        if (await client.get("/readyz")).json()["model_id"] == "from-worker":
            break
        await asyncio.sleep(0.1)
    assert (await client.get("/readyz")).json()["model_id"] == "from-worker"


async def test_hallucinate_uses_one_model_across_a_hot_swap(client, settings, digits) -> None:
    """A model with other label names swapped in mid-request must not answer a request whose
    labels were checked against the old one: every answer is the old model's or a 422."""
    words = settings.model_store / "tiny-words"
    shutil.copytree(settings.model_store / "tiny", words)
    meta = json.loads((words / "model.json").read_text())
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    meta["labels"]["names"] = names
    (words / "model.json").write_text(json.dumps(meta))
    # Over 1 MB each: uploads that big are spooled to disk and read back in a thread, which is
    # where a swap could land between the label check and the encoding.
    images = [noisy_png_of(digits[0][0]), noisy_png_of(digits[0][1]), noisy_png_of(digits[9][0])]
    assert min(map(len, images)) > 1024 * 1024
    files = [("files", ("x.png", data, "image/png")) for data in images]

    async def hallucinate():
        return await client.post("/v1/hallucinate", files=files, data={"labels": "0,0,9", "per_class": "1", "seed": "1"})

    async def swaps():
        out = []
        for target in ["tiny-words", "tiny"] * 8:
            out.append((await client.post(f"/v1/models/{target}/activate", json={})).status_code)
            await asyncio.sleep(0)
        return out

    *answers, swapped = await asyncio.gather(*[hallucinate() for _ in range(20)], swaps())
    assert swapped == [200] * 16
    for r in answers:
        if r.status_code == 200:
            body = r.json()
            assert body["model_id"] == "tiny", "labels checked on one model, images made by another"
            assert {i["label"] for i in body["images"]} <= set("0123456789")
        else:
            assert_problem(r, 422, "unknown labels")
