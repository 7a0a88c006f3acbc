"""The first start (service/bootstrap.py): an empty store gets the default model, trained once
however many processes start together, under a lease that a dead holder's successor takes over
(an epoch of the default architecture: marked e2e, so `make test-fast` leaves it out)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service import bootstrap
from service.bootstrap import LEASE, bootstrap_default_model
from service.store import ModelStore

pytestmark = pytest.mark.e2e
ONE_EPOCH = {"epochs": 1, "latent_dim": 8}
"""The real default is TrainConfig() (tens of epochs); one epoch keeps the tests fast."""


def test_bootstrap_trains_the_default_model_once(tmp_path: Path, store_dir: Path) -> None:
    assert bootstrap_default_model(ModelStore(store_dir), "cpu") is None  # a model is there: nothing to train

    store = ModelStore(tmp_path / "fresh")
    made: list[str | None] = []
    racers = [threading.Thread(target=lambda: made.append(bootstrap_default_model(store, "cpu", ONE_EPOCH))) for _ in range(3)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    trained = [m for m in made if m is not None]
    assert len(made) == 3 and len(trained) == 1, made
    assert store.ids() == trained and store.active_id() == trained[0]
    assert store.describe(trained[0])["family"] == "atnl" and store.describe(trained[0])["dataset"] == "mnist-5k"
    assert not store.objects.exists(LEASE)  # given back


def test_a_lease_left_by_a_dead_holder_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "LEASE_STALE_SECONDS", 1.0)
    monkeypatch.setattr(bootstrap, "WAIT_POLL_SECONDS", 0.1)
    store = ModelStore(tmp_path / "store").ensure()
    assert store.objects.create(LEASE, b'{"holder": "a process that died"}')
    model_id = bootstrap_default_model(store, "cpu", ONE_EPOCH)
    assert model_id is not None and store.active_id() == model_id and not store.objects.exists(LEASE)
