"""The store contract (service/objects.py, service/store.py, service/dataset_store.py; docs/API.md §6),
run against both backends: a local directory and a real S3 server on loopback (SeaweedFS's
``weed``). What the API, the workers and the bootstrap rely on: exclusive creates, whole-object
replaces, conditional reads, checkpoints published weights first and model.json last, the
content-hash cache, the store id every process agrees on, and data sets."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from models import load_checkpoint
from service.dataset_store import DatasetStore
from service.errors import InvalidInput, ModelNotFound
from service.objects import LocalObjects, Objects, StoreUnavailable, check_key
from service.s3_objects import S3Objects
from service.store import ModelStore, open_objects
from tests.service.archives import labelled, zip_of
from tests.service.helpers import S3_KEYS

BACKENDS = ["local", "s3"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_location")


@pytest.fixture
def objects(location: str) -> Objects:
    return open_objects(location).ensure()


def test_open_objects_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_objects(str(tmp_path)), LocalObjects) and open_objects(str(tmp_path)).url == "local"
    s3 = open_objects("s3://bucket/some/prefix")
    assert isinstance(s3, S3Objects) and (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    with pytest.raises(ValueError):
        open_objects("s3:///prefix")


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "..", "a//b", "a\\b", "./a", "a/"])
def test_keys_never_leave_the_store(bad: str) -> None:
    with pytest.raises(ValueError):
        check_key(bad)


def test_read_write_and_replace(objects: Objects) -> None:
    assert objects.read("a/b.txt") is None and not objects.exists("a/b.txt")
    objects.write("a/b.txt", b"one")
    assert objects.read("a/b.txt") == b"one" and objects.exists("a/b.txt")
    objects.write("a/b.txt", b"two, longer")
    assert objects.read("a/b.txt") == b"two, longer"
    objects.delete(["a/b.txt", "never/there"])  # a missing key is no error
    assert objects.read("a/b.txt") is None


def test_create_is_exclusive_among_racing_writers(objects: Objects) -> None:
    wins: list[int] = []

    def race(k: int) -> None:
        if objects.create("LEASE", f"writer {k}".encode()):
            wins.append(k)

    threads = [threading.Thread(target=race, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert objects.read("LEASE") == f"writer {wins[0]}".encode()
    assert objects.create("LEASE", b"late") is False and objects.read("LEASE") == f"writer {wins[0]}".encode()


def test_a_conditional_read_sends_nothing_while_the_tag_holds(objects: Objects) -> None:
    missing = objects.read_if_changed("ACTIVE", None)
    assert (missing.changed, missing.data) == (False, None)
    objects.write("ACTIVE", b"m1\n")
    first = objects.read_if_changed("ACTIVE", None)
    assert first.changed and first.data == b"m1\n" and first.tag
    again = objects.read_if_changed("ACTIVE", first.tag)
    assert (again.changed, again.data, again.tag) == (False, None, first.tag)
    objects.write("ACTIVE", b"m2-different\n")
    changed = objects.read_if_changed("ACTIVE", first.tag)
    assert changed.changed and changed.data == b"m2-different\n" and changed.tag != first.tag
    objects.delete(["ACTIVE"])
    gone = objects.read_if_changed("ACTIVE", changed.tag)
    assert gone.changed and gone.data is None


def test_children_and_keys(objects: Objects, tmp_path: Path) -> None:
    for key in ("m1/model.json", "m1/w", "m2/model.json", "datasets/d1/x/1.png", "ACTIVE"):
        objects.write(key, b"x")
    assert objects.children("") == ["datasets", "m1", "m2"]
    assert objects.children("datasets") == ["d1"]
    assert sorted(k.key for k in objects.keys("m1")) == ["m1/model.json", "m1/w"]
    assert all(k.age_seconds < 120 for k in objects.keys("m1"))
    assert objects.keys("nothing") == [] and objects.children("nothing") == []
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "b.bin").write_bytes(b"bytes")
    objects.upload(tmp_path / "up" / "b.bin", "m3/b.bin")
    assert objects.download("m3/b.bin", tmp_path / "down" / "b.bin") and (tmp_path / "down" / "b.bin").read_bytes() == b"bytes"
    assert objects.download("m3/none", tmp_path / "down" / "none") is False


def publish(store: ModelStore, model_id: str, checkpoint: Path, created_at: str | None = None) -> None:
    with store.writing(model_id) as out:
        shutil.copytree(checkpoint, out)
        if created_at is not None:
            meta = json.loads((out / "model.json").read_text())
            (out / "model.json").write_text(json.dumps({**meta, "created_at": created_at}))


def test_checkpoints_are_published_listed_and_loaded(location: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    store = ModelStore(location, tmp_path / "cache").ensure()
    assert (store.ids(), store.active_id(), store.default_id()) == ([], None, None)
    publish(store, "b-new", tiny_checkpoint, "2999-01-01T00:00:00Z")
    publish(store, "a-old", tiny_checkpoint, "1999-01-01T00:00:00Z")
    assert store.ids() == ["a-old", "b-new"] and store.default_id() == "b-new"
    assert [m["id"] for m in store.listing()] == ["a-old", "b-new"]
    assert store.describe("a-old")["family"] == "atnl" and store.describe("a-old")["dataset"] == "mnist-5k"
    path = store.checkpoint("a-old")
    assert load_checkpoint(path, verify=True).meta["created_at"] == "1999-01-01T00:00:00Z"
    with pytest.raises(ModelNotFound):
        store.checkpoint("nope")
    with pytest.raises(InvalidInput):
        store.checkpoint("../a-old")
    store.set_active("a-old")
    assert store.active_id() == "a-old" == store.default_id()
    with pytest.raises(ModelNotFound):
        store.set_active("nope")
    assert store.active_id() == "a-old"


def test_a_write_without_model_json_is_partial_never_listed_and_removed(
    location: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    store = ModelStore(location, tmp_path / "cache").ensure()
    publish(store, "whole", tiny_checkpoint)
    if isinstance(store.objects, LocalObjects):
        shutil.copytree(tiny_checkpoint, store.root / ".half.tmp-1")  # what a killed save_checkpoint leaves
        (store.root / ".half.tmp-1" / "model.json").unlink()
    else:
        store.objects.upload(tiny_checkpoint / "model.safetensors", "half/model.safetensors")  # weights, no model.json
    assert store.ids() == ["whole"] and not store.exists("half")
    with pytest.raises(ModelNotFound):
        store.checkpoint("half")
    assert store.remove_partial("half")
    assert store.remove_partial("half") == [] and store.remove_partial("whole") == []
    assert store.ids() == ["whole"] and store.checkpoint("whole")


def test_a_failed_write_publishes_nothing(location: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    store = ModelStore(location, tmp_path / "cache").ensure()
    with pytest.raises(RuntimeError), store.writing("broken") as out:
        shutil.copytree(tiny_checkpoint, out)
        raise RuntimeError("training failed")
    assert store.ids() == [] and not store.exists("broken")


def test_s3_checkpoints_are_cached_by_content_hash_and_verified(s3_location: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    writer = ModelStore(s3_location, tmp_path / "writer-cache").ensure()
    publish(writer, "m", tiny_checkpoint)
    reader = ModelStore(s3_location, tmp_path / "reader-cache")
    digest = json.loads((tiny_checkpoint / "model.json").read_text())["content_hash"].removeprefix("sha256:")
    path = reader.checkpoint("m")
    assert path == tmp_path / "reader-cache" / "models" / "m" / digest
    assert (path / "model.safetensors").read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()
    assert reader.checkpoint("m") == path  # downloaded once
    # Weights that do not match model.json's hash are refused, and nothing is cached for them.
    reader.objects.write("bad/model.json", (tiny_checkpoint / "model.json").read_bytes())
    reader.objects.write("bad/model.safetensors", b"not the weights")
    with pytest.raises(ModelNotFound, match="content hash"):
        reader.checkpoint("bad")
    assert not (tmp_path / "reader-cache" / "models" / "bad" / digest).exists()


def test_every_process_agrees_on_the_store_id(location: str, tmp_path: Path) -> None:
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda k=k: ids.append(ModelStore(location, tmp_path / f"c{k}").store_id())) for k in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids[0]) == 16
    assert ModelStore(location, tmp_path / "later").store_id() == ids[0]


def test_data_sets_are_stored_listed_fetched_and_deleted(location: str, tmp_path: Path) -> None:
    from service.archive_members import ArchiveCaps
    from service.imaging import ImageCaps

    datasets = DatasetStore(location, tmp_path / "cache").ensure()
    archive = tmp_path / "digits.zip"
    archive.write_bytes(zip_of(labelled(["5", "10", "20"], per_label=2)))
    record = datasets.create(archive, ArchiveCaps(10**7, 100, 10**8, 10**6, 200.0), ImageCaps(10**6, 10**8))
    assert record["labels"] == ["5", "10", "20"] and record["counts"] == {"5": 2, "10": 2, "20": 2}
    assert datasets.ids() == [record["id"]] and datasets.describe(record["id"])["images"] == 6
    assert datasets.exists(record["id"])
    local = datasets.local_dir(record["id"])
    assert (local / "labels.txt").read_text() == "5\n10\n20\n" and len(list((local / "images").rglob("*.png"))) == 6
    # A second process (another host's cache) reads the same data set.
    other = DatasetStore(location, tmp_path / "other-cache")
    assert other.describe(record["id"])["labels"] == ["5", "10", "20"]
    assert len(list((other.local_dir(record["id"]) / "images").rglob("*.png"))) == 6
    datasets.delete(record["id"])
    assert datasets.ids() == [] and not datasets.exists(record["id"])


def test_an_unreachable_s3_store_is_a_503_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.servers import free_port

    for name, value in S3_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = ModelStore("s3://atnl-test/down", tmp_path / "cache")
    for call in (store.ids, store.active_id, store.store_id, lambda: store.checkpoint("m")):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.status == 503 and "s3://atnl-test/down" in caught.value.detail
