"""A client that goes away cancels its queued inference work.

Starlette does not cancel a handler when its client disconnects: a request queued
behind others (for an inference thread, or in a batch queue) would still run, its
answer sent to no one. ``ClientWatch``, a pure ASGI middleware, remembers each
request's ``receive`` channel in a context variable; ``cancel_on_disconnect``, around
an engine operation, listens on that channel once the body has been read (the next
message of a finished body is ``http.disconnect``, and only comes when the client
leaves) and cancels the operation when it comes. Work not yet started never runs;
work already in a thread finishes and its result is dropped. The request ends with
``ClientDisconnected`` (499, nginx's "client closed request", logged in the metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ServiceError


class ClientDisconnected(ServiceError):
    """The client closed the connection while its work waited; the answer goes nowhere."""

    status = 499
    title = "Client closed request"


@dataclass
class ClientChannel:
    """One request's ASGI ``receive``, and whether its body has been read to the end."""

    receive: Receive
    body_read: bool = False
    gone: bool = False


CLIENT: ContextVar[ClientChannel | None] = ContextVar("atnl_client", default=None)


class ClientWatch:
    """ASGI middleware: makes each HTTP request's client channel visible to ``cancel_on_disconnect``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        channel = ClientChannel(receive)

        async def receive_tracked() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                channel.gone = True
            elif not message.get("more_body", False):
                channel.body_read = True
            return message

        token = CLIENT.set(channel)
        try:
            await self.app(scope, receive_tracked, send)
        finally:
            CLIENT.reset(token)


async def _cancel_when_gone(channel: ClientChannel, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` once the client has disconnected (its body must have been read to the end)."""
    try:
        while not channel.gone:
            if (await channel.receive())["type"] == "http.disconnect":
                channel.gone = True
    except Exception:  # the channel broke: nothing to watch; the request ends by itself
        return
    scope.cancel()


@contextlib.asynccontextmanager
async def cancel_on_disconnect() -> AsyncIterator[None]:
    """Run the block, cancelled (-> ``ClientDisconnected``) if the request's client goes away meanwhile.

    Outside a request, or before its body was read to the end, the block just runs."""
    channel = CLIENT.get()
    if channel is None or not channel.body_read:
        yield
        return
    if channel.gone:
        raise ClientDisconnected("the client closed the connection")
    with anyio.CancelScope() as scope:
        watcher = asyncio.create_task(_cancel_when_gone(channel, scope))
        try:
            yield
        finally:
            watcher.cancel()
    if scope.cancelled_caught:
        raise ClientDisconnected("the client closed the connection while its work was queued")
