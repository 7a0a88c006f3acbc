"""Activation: the store's ACTIVE pointer written, then announced to every API replica.

``ACTIVE`` in the store is the one source of truth. Whoever activates a model (an API replica's
POST /v1/models/{id}/activate, a worker's ``activate: true``, the first-start bootstrap) writes
it, then publishes the id on the Redis channel ``atnl:activations:<store id>``. Every replica
listens there and, on a message, reads ACTIVE at once, so a swap reaches all of them in well
under a second; the replicas' poll of ACTIVE (ATNL_STORE_POLL_SECONDS, a conditional GET on
S3) keeps following while Redis is down. The message only wakes a replica: it always acts on
what ACTIVE says, so a lost, late or stray message can do no harm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redis import Redis, RedisError

from service.store import ModelStore

CHANNEL = "atnl:activations:{store_id}"
ANNOUNCE_TIMEOUT_SECONDS = 2.0
"""Connect and socket timeout of one announcement: an activation never waits long on Redis."""
RECONNECT_SECONDS = (0.5, 10.0)
"""First and longest wait before a listener subscribes again after losing Redis (doubling)."""
HEALTH_CHECK_SECONDS = 10
"""A listener pings Redis this often while no message comes, so a dead connection is noticed."""
LISTEN_WAIT_SECONDS = 1.0
"""Longest a listener waits for a message before it looks whether it was asked to stop."""
log = logging.getLogger("atnl.activation")


def channel(store_id: str) -> str:
    return CHANNEL.format(store_id=store_id)


def announce(redis_url: str, store_id: str, model_id: str) -> bool:
    """Publish ``model_id`` on the store's channel; False (logged) when Redis cannot be reached:
    the replicas' poll of ACTIVE then carries the swap."""
    try:
        with Redis.from_url(
            redis_url, socket_timeout=ANNOUNCE_TIMEOUT_SECONDS, socket_connect_timeout=ANNOUNCE_TIMEOUT_SECONDS
        ) as conn:
            conn.publish(channel(store_id), model_id)
        return True
    except (RedisError, OSError) as e:
        log.warning("activation of %s not announced (Redis unreachable: %s); replicas pick it up by polling", model_id, e)
        return False


def activate(store: ModelStore, model_id: str, redis_url: str | None) -> None:
    """Point the store's ACTIVE at ``model_id`` (ModelNotFound when it is not there), then announce it."""
    store.set_active(model_id)
    if redis_url:
        announce(redis_url, store.store_id(), model_id)


class Listener:
    """A thread that calls ``wake()`` on every announcement for ``store_id``, and once each time
    its subscription is (re)made (a swap announced while Redis was away is then looked for at
    once). A lost connection is made again after RECONNECT_SECONDS. A thread with a blocking
    client, not a task: redis-py's asyncio pub/sub can swallow a cancellation mid-read, and the
    API's shutdown must never wait on it. ``wake`` runs in this thread."""

    def __init__(self, redis_url: str, store_id: str, wake: Callable[[], None]) -> None:
        self.redis_url, self.store_id, self.wake = redis_url, store_id, wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atnl-activations", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end (within about a second); does not wait for it."""
        self._stop.set()

    def _run(self) -> None:
        delay, warned = RECONNECT_SECONDS[0], False
        while not self._stop.is_set():
            try:
                with (
                    Redis.from_url(
                        self.redis_url,
                        socket_connect_timeout=ANNOUNCE_TIMEOUT_SECONDS,
                        socket_timeout=HEALTH_CHECK_SECONDS * 2,
                        health_check_interval=HEALTH_CHECK_SECONDS,
                    ) as conn,
                    conn.pubsub(ignore_subscribe_messages=True) as pubsub,
                ):
                    pubsub.subscribe(channel(self.store_id))
                    if warned:
                        log.info("listening for activations on Redis again")
                    delay, warned = RECONNECT_SECONDS[0], False
                    self.wake()
                    while not self._stop.is_set():
                        if pubsub.get_message(timeout=LISTEN_WAIT_SECONDS) is not None:
                            self.wake()
            except Exception as e:  # Redis down or restarting: poll only, and subscribe again later
                if not warned:
                    log.warning("not listening for activations (Redis unreachable: %s); following ACTIVE by polling", e)
                    warned = True
            self._stop.wait(delay)
            delay = min(delay * 2, RECONNECT_SECONDS[1])
