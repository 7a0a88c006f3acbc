"""The model store (service/store.py; docs/API.md §6): checkpoints in directories named by their
ids, the ACTIVE pointer, the store's id, partial checkpoints, and listings that a broken
model.json cannot break. On copies of the real tiny checkpoint."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from service.errors import InvalidInput, ModelNotFound
from service.store import POINTER, STORE_ID, ModelStore, new_model_id
from tests.service.helpers import assert_problem

pytestmark = pytest.mark.anyio


def add(store: Path, model_id: str, tiny_checkpoint: Path, created_at: str | None = None) -> None:
    """A copy of the tiny checkpoint as ``model_id``, its created_at set when given."""
    shutil.copytree(tiny_checkpoint, store / model_id)
    if created_at is not None:
        meta = json.loads((store / model_id / "model.json").read_text())
        (store / model_id / "model.json").write_text(json.dumps({**meta, "created_at": created_at}))


def test_new_ids_sort_by_creation_and_never_collide() -> None:
    ids = [new_model_id("atnl") for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"atnl-\d{8}T\d{6}Z-[0-9a-f]{6}", i) for i in ids)


@pytest.mark.parametrize("bad", ["", ".hidden", ".tiny.tmp-1", "../etc", "a/b", "a\\b", "x" * 129, "-dash", "sp ace"])
def test_ids_that_are_not_plain_names_are_refused(store_dir: Path, bad: str) -> None:
    store = ModelStore(store_dir)
    with pytest.raises(InvalidInput, match="invalid model id"):
        store.path(bad)
    assert not store.exists(bad)


def test_a_missing_checkpoint_is_model_not_found(store_dir: Path) -> None:
    store = ModelStore(store_dir)
    (store_dir / "empty").mkdir()  # a directory without model.json is no checkpoint
    for model_id in ("nope", "empty"):
        with pytest.raises(ModelNotFound):
            store.checkpoint(model_id)
        assert not store.exists(model_id)
    assert store.checkpoint("tiny") == store_dir / "tiny" and store.exists("tiny")


def test_ids_are_complete_checkpoints_oldest_first(store_dir: Path, tiny_checkpoint: Path) -> None:
    add(store_dir, "b-newest", tiny_checkpoint, "2999-01-01T00:00:00Z")
    add(store_dir, "a-oldest", tiny_checkpoint, "1999-01-01T00:00:00Z")
    shutil.copytree(tiny_checkpoint, store_dir / ".c.tmp-123")  # being written
    (store_dir / "no-meta").mkdir()
    store = ModelStore(store_dir)
    assert store.ids() == ["a-oldest", "tiny", "b-newest"]
    assert [m["id"] for m in store.listing()] == store.ids()
    assert ModelStore(store_dir / "missing").ids() == []


def test_describe_reads_model_json(store_dir: Path) -> None:
    described = ModelStore(store_dir).describe("tiny")
    assert described["id"] == "tiny" and described["family"] == "atnl" and described["dataset"] == "mnist-5k"
    assert described["created_at"] and "linear_probe_acc" in described["metrics"]


@pytest.mark.parametrize(
    "text",
    [b"{not json", b"[1, 2]", b'{"data": 3, "metrics": [1]}', b"\xff\xfe\x00garbage"],
    ids=["json", "list", "types", "bytes"],
)
def test_a_broken_model_json_is_described_with_nothing_known(store_dir: Path, tiny_checkpoint: Path, text: bytes) -> None:
    add(store_dir, "broken", tiny_checkpoint)
    (store_dir / "broken" / "model.json").write_bytes(text)
    store = ModelStore(store_dir)
    nothing = {"family": None, "dataset": None, "labels": [], "image_shape": None, "preprocess": None, "created_at": None}
    assert store.describe("broken") == {"id": "broken", **nothing, "metrics": {}}
    assert set(store.ids()) == {"tiny", "broken"}


def test_the_pointer_names_an_existing_checkpoint_or_nothing(store_dir: Path, tiny_checkpoint: Path) -> None:
    store = ModelStore(store_dir)
    assert store.active_id() is None
    assert store.default_id() == "tiny"  # no pointer: the newest checkpoint
    add(store_dir, "other", tiny_checkpoint, "1999-01-01T00:00:00Z")
    store.set_active("other")
    assert (store_dir / POINTER).read_text() == "other\n" and store.active_id() == "other" == store.default_id()
    shutil.rmtree(store_dir / "other")
    assert store.active_id() is None and store.default_id() == "tiny"  # a pointer to a deleted model names nothing
    (store_dir / POINTER).write_text("\n")
    assert store.active_id() is None


def test_set_active_refuses_what_is_not_there_and_leaves_the_pointer(store_dir: Path) -> None:
    store = ModelStore(store_dir)
    store.set_active("tiny")
    for model_id, error in (("nope", ModelNotFound), ("../tiny", InvalidInput)):
        with pytest.raises(error):
            store.set_active(model_id)
    assert store.active_id() == "tiny"
    assert [p.name for p in store_dir.iterdir() if p.name.startswith(f".{POINTER}")] == []  # no temp file left


def test_the_empty_store_has_nothing_to_serve(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "new")
    assert (store.ids(), store.active_id(), store.default_id(), store.listing()) == ([], None, None, [])
    assert store.ensure().root.is_dir()


def test_the_store_id_is_made_once_and_agreed_on(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(ModelStore(root).store_id())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and re.fullmatch(r"[0-9a-f]{16}", ids[0])
    assert (root / STORE_ID).read_text() == ids[0] + "\n" and ModelStore(root).store_id() == ids[0]
    assert ModelStore(tmp_path / "elsewhere").store_id() != ids[0]


def test_remove_partial_removes_only_that_models_temporary_directories(store_dir: Path) -> None:
    for name in (".m1.tmp-1", ".m1.tmp-2", ".m10.tmp-1", ".other.tmp-1"):
        (store_dir / name).mkdir()
    store = ModelStore(store_dir)
    assert sorted(store.remove_partial("m1")) == [".m1.tmp-1", ".m1.tmp-2"]
    assert sorted(p.name for p in store_dir.iterdir()) == [".m10.tmp-1", ".other.tmp-1", "tiny"]
    assert store.remove_partial("m1") == []
    with pytest.raises(InvalidInput):
        store.remove_partial("*")  # a pattern must not reach outside one model's names


async def test_a_broken_model_json_does_not_break_the_listing(client, settings) -> None:
    for name, text in [("bad-json", "{not json"), ("a-list", "[1, 2]"), ("odd-types", '{"data": 3, "metrics": [1]}')]:
        shutil.copytree(settings.model_store / "tiny", settings.model_store / name)
        (settings.model_store / name / "model.json").write_text(text)
    (settings.model_store / "binary").mkdir()
    (settings.model_store / "binary" / "model.json").write_bytes(b"\xff\xfe\x00garbage")
    r = await client.get("/v1/models")
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["active"] == "tiny"
    assert {m["id"] for m in listing["models"]} == {"tiny", "bad-json", "a-list", "odd-types", "binary"}
    assert_problem(await client.post("/v1/models/bad-json/activate", json={}), 404)
    assert (await client.get("/v1/models")).json()["active"] == "tiny"
