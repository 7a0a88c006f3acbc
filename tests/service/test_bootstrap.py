"""The first start (service/bootstrap.py): an empty store gets the default model, trained once
(an epoch of the default architecture: marked e2e, so `make test-fast` leaves it out)."""

from __future__ import annotations

import functools

import pytest

from service.store import ModelStore

pytestmark = pytest.mark.e2e


def test_bootstrap_trains_the_default_model_once(tmp_path, monkeypatch, store_dir) -> None:
    import models.training
    from service.bootstrap import bootstrap_default_model

    assert bootstrap_default_model(ModelStore(store_dir), "cpu") is None  # a model is there: nothing to train

    # The real default is TrainConfig() (tens of epochs); one epoch keeps the test fast.
    monkeypatch.setattr(models.training, "TrainConfig", functools.partial(models.training.TrainConfig, epochs=1, latent_dim=8))
    store = ModelStore(tmp_path / "fresh")
    model_id = bootstrap_default_model(store, "cpu")
    assert model_id is not None and store.active_id() == model_id
    assert store.describe(model_id)["family"] == "atnl" and store.describe(model_id)["dataset"] == "mnist-5k"
