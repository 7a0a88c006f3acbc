"""Following the store: every API replica serves what the store's ACTIVE names.

ACTIVE is the one source of truth. ``follow`` reads it every ATNL_STORE_POLL_SECONDS (a
conditional GET on S3: no body while it is unchanged) and at once when an activation is
announced on Redis (service.activation), loads what it names, and checks that the store's
STORE_ID is still the one this process started on: a replica never drifts onto another store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from service import activation
from service.objects import StoreUnavailable
from service.store import POINTER, STORE_ID

if TYPE_CHECKING:
    from service.engine import Engine

log = logging.getLogger("atnl.engine")


def _waker(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[[], None]:
    """``event.set`` made safe to call from another thread, and after ``loop`` closed."""

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(event.set)

    return wake


def to_serve(engine: Engine, tag: str | None) -> tuple[str | None, str | None]:
    """(the model to serve, ACTIVE's tag): what ACTIVE names, else the newest checkpoint (that
    reads every model.json: only while the pointer names nothing); (None, tag) when ACTIVE is
    unchanged since ``tag`` and a model is loaded. Blocking: call it in a thread."""
    pointer = engine.store.objects.read_if_changed(POINTER, tag)
    if not pointer.changed and engine.ready:
        return None, tag
    named = engine.store.pointed(pointer.data) if pointer.changed else engine.store.active_id()
    if named is not None and engine.store.exists(named):
        return named, pointer.tag
    return engine.store.default_id(), pointer.tag


def same_store(engine: Engine, tag: str | None) -> tuple[bool, str | None]:
    """(whether the store's STORE_ID is still the one this process started on, its tag); the
    first call learns the id (making it on a new store). Blocking: call it in a thread."""
    if engine.store_id is None:
        engine.store_id = engine.store.store_id()
    seen = engine.store.objects.read_if_changed(STORE_ID, tag)
    if not seen.changed:
        return True, tag
    return (seen.data or b"").decode(errors="replace").strip() == engine.store_id, seen.tag


async def follow(engine: Engine) -> None:
    """Follow ACTIVE (activations by workers, the bootstrap or other replicas): polled every
    ATNL_STORE_POLL_SECONDS, and read at once when Redis announces one."""
    s = engine.settings
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    listener: activation.Listener | None = None
    pointer_tag: str | None = None
    id_tag: str | None = None
    try:
        while True:
            try:
                same, id_tag = await anyio.to_thread.run_sync(functools.partial(same_store, engine), id_tag)
                if not same:
                    if not engine.store_replaced:
                        log.error(
                            "the model store %s no longer has the id %s this process started on (replaced or "
                            "emptied): not following it; restart this process to serve the new store",
                            engine.store.url,
                            engine.store_id,
                        )
                    engine.store_replaced = True
                elif engine.store_id is not None:
                    if listener is None and s.redis_activation_channel:
                        listener = activation.Listener(s.redis_url, engine.store_id, _waker(loop, wake)).start()
                    target, tag = await anyio.to_thread.run_sync(functools.partial(to_serve, engine), pointer_tag)
                    if target is not None and (not engine.ready or engine.current.id != target):
                        no_pointer = await anyio.to_thread.run_sync(engine.store.active_id) is None
                        await engine.activate(target, write_pointer=no_pointer)
                    pointer_tag = tag  # only once followed: a failed load is tried again
            except StoreUnavailable as e:
                log.warning("could not read the model store (%s); serving %s meanwhile", e.detail, served(engine))
            except Exception:  # keep following; a bad checkpoint must not stop the loop
                log.exception("could not follow the model store")
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
            # arrives as the event is set, and the shutdown would then wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.store_poll_seconds):
                    await wake.wait()
            wake.clear()
    finally:
        if listener is not None:
            listener.stop()


def served(engine: Engine) -> str:
    return engine.current.id if engine.ready else "no model"
