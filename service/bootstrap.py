"""First start: train the default ATNL model on mnist-5k into an empty store and activate it.

Run by ``atnl serve`` as a child process (``python -m service.bootstrap``) so the API never
trains in its own process and answers /healthz (and 503 on /readyz) meanwhile.

However many replicas start together on an empty store, on however many hosts, one trains: the
one whose exclusive create of the ``BOOTSTRAP`` lease object wins (a conditional put on S3).
It rewrites the lease every LEASE_REFRESH_SECONDS while it trains; the others wait for the
model to appear, and take the lease over only if it stops changing for LEASE_STALE_SECONDS
(its holder died), judged by their own clocks, so hosts' clocks need not agree.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Any

from service.activation import activate
from service.settings import get_settings
from service.store import ModelStore, new_model_id, open_store

log = logging.getLogger("atnl.bootstrap")
LEASE = "BOOTSTRAP"
LEASE_REFRESH_SECONDS = 5.0
LEASE_STALE_SECONDS = 60.0
WAIT_POLL_SECONDS = 2.0


def _lease_body(beat: int) -> bytes:
    return json.dumps({"holder": f"{socket.gethostname()}:{os.getpid()}", "beat": beat, "at": time.time()}).encode()


def _take_lease(store: ModelStore) -> bool:
    """True once this process holds the lease; False when another process made the model meanwhile."""
    seen: tuple[str | None, float] | None = None  # (the lease's tag, when this process first saw it)
    while True:
        if store.default_id() is not None:
            return False
        if store.objects.create(LEASE, _lease_body(0)):
            return True
        now = store.objects.read_if_changed(LEASE, seen[0] if seen else None)
        if seen is None or now.changed:
            seen = (now.tag, time.monotonic())
        elif time.monotonic() - seen[1] > LEASE_STALE_SECONDS:
            log.warning("the bootstrap lease has not changed for %.0f s (its holder died): taking it over", LEASE_STALE_SECONDS)
            store.objects.delete([LEASE])
            seen = None
            continue
        time.sleep(WAIT_POLL_SECONDS)


def _heartbeat(store: ModelStore, stop: threading.Event) -> None:
    beat = 0
    while not stop.wait(LEASE_REFRESH_SECONDS):
        beat += 1
        try:
            store.objects.write(LEASE, _lease_body(beat))
        except Exception as e:  # the store is away for a moment: the next beat tries again
            log.warning("could not refresh the bootstrap lease: %s", e)


def bootstrap_default_model(
    store: ModelStore, device: str, train: dict[str, Any] | None = None, redis_url: str | None = None
) -> str | None:
    """Train ``TrainConfig(**train)`` (the library's defaults) on mnist-5k unless the store has a
    model, and activate it (announced on ``redis_url``); the new id, or None when nothing was trained."""
    store.ensure()
    if not _take_lease(store):
        log.info("store already has model %s; nothing to train", store.default_id())
        return None
    stop = threading.Event()
    beating = threading.Thread(target=_heartbeat, args=(store, stop), daemon=True)
    beating.start()
    try:
        from models.pipeline import train_to_checkpoint
        from models.training import TrainConfig

        cfg = TrainConfig.from_dict({"dataset": "mnist-5k", "device": device, **(train or {})})
        model_id = new_model_id(cfg.family)
        log.info(
            "empty model store %s: training the default %s model on %s (%d epochs) as %s",
            store.url,
            cfg.family,
            cfg.dataset,
            cfg.epochs,
            model_id,
        )

        def on_progress(p: dict[str, Any]) -> None:
            if p["step"] == p["steps"]:
                log.info("default model: epoch %d/%d loss %.4f", p["epoch"], p["epochs"], p["loss"])

        with store.writing(model_id) as out:
            train_to_checkpoint(cfg, out, on_progress=on_progress)
        activate(store, model_id, redis_url)
        log.info("default model %s written to %s and activated", model_id, store.url)
        return model_id
    finally:
        stop.set()
        beating.join()
        store.objects.delete([LEASE])


def main() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redis_url = settings.redis_url if settings.redis_activation_channel else None
    bootstrap_default_model(open_store(settings), settings.device, settings.bootstrap_train, redis_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
