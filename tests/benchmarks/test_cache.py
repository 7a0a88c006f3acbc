"""A stopped benchmark resumes: the second identical training is loaded, not redone."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.cache import ResultCache, cached_train
from models.data import ImageSet
from models.training import TrainConfig


def test_second_training_with_the_same_key_is_loaded(digits_100: ImageSet, atnl_cache_dir: Path) -> None:
    cfg = TrainConfig(family="ae", epochs=1, batch_size=20, latent_dim=4, device="cpu", threads=1)
    first, info1 = cached_train(cfg, digits_100)
    second, info2 = cached_train(cfg, digits_100)
    assert (info1["cached"], info2["cached"]) == (False, True)
    assert info1["test_indices"] == info2["test_indices"]
    x = digits_100.images[:5]
    assert torch.allclose(first.decode(first.code(x)), second.decode(second.code(x)))

    _, info3 = cached_train(TrainConfig(**{**cfg.to_dict(), "seed": 1}), digits_100)
    assert info3["cached"] is False


def test_result_cache_survives_a_new_process_view(atnl_cache_dir: Path) -> None:
    ResultCache("k").put("k1/draw0/none", {"knn": 0.5})
    assert ResultCache("k").get("k1/draw0/none") == {"knn": 0.5}
    assert ResultCache("other").get("k1/draw0/none") is None
