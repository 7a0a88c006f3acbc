"""First start: train the default ATNL model on mnist-5k into an empty store and activate it.

Run by ``atnl serve`` as a child process (``python -m service.bootstrap``) so
the API never trains in its own process and answers /healthz (and 503 on
/readyz) meanwhile. A file lock makes concurrent API replicas train it once.
"""

from __future__ import annotations

import fcntl
import logging
import sys
from typing import Any

from service.settings import get_settings
from service.store import ModelStore, new_model_id

log = logging.getLogger("atnl.bootstrap")
LOCK = ".bootstrap.lock"


def bootstrap_default_model(store: ModelStore, device: str) -> str | None:
    """Train ``TrainConfig()`` (the library's defaults) on mnist-5k unless the store already has a model."""
    store.ensure()
    with open(store.root / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second replica waits here, then finds the model
        existing = store.default_id()
        if existing is not None:
            log.info("store already has model %s; nothing to train", existing)
            return None
        from models.pipeline import train_to_checkpoint
        from models.training import TrainConfig

        cfg = TrainConfig(dataset="mnist-5k", device=device)
        model_id = new_model_id(cfg.family)
        log.info(
            "empty model store %s: training the default %s model on %s (%d epochs) as %s",
            store.root,
            cfg.family,
            cfg.dataset,
            cfg.epochs,
            model_id,
        )

        def on_progress(p: dict[str, Any]) -> None:
            if p["step"] == p["steps"]:
                log.info("default model: epoch %d/%d loss %.4f", p["epoch"], p["epochs"], p["loss"])

        path = train_to_checkpoint(cfg, store.path(model_id), on_progress=on_progress)
        store.set_active(model_id)
        log.info("default model %s written to %s and activated", model_id, path)
        return model_id


def main() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bootstrap_default_model(ModelStore(settings.model_store), settings.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
