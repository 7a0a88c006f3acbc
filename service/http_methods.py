"""HEAD and OPTIONS on every path, and the methods a path allows (RFC 9110).

FastAPI routes answer only the methods they declare, where Starlette's own routes
also answer HEAD wherever they answer GET. ``ImplicitMethods`` gives every path of
the API that behaviour: HEAD is GET without the body (same status and headers), and
OPTIONS answers 204 with ``Allow``. Neither is listed in the OpenAPI document, as
usual for methods the framework answers. A 405 carries ``Allow`` as well
(service.errors asks ``allowed_methods``).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods the request's path answers, HEAD and OPTIONS included; [] for a path no route has."""
    methods: set[str] = set()
    for route in iter_route_contexts(routes):  # included routers' routes too, with their prefixes
        match, _ = route.matches(scope)  # PARTIAL: the path is this route's, the method is not
        if match is not Match.NONE:
            methods |= route.methods or set()
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"})


class ImplicitMethods:
    """ASGI middleware: HEAD as GET without the body where a path answers GET; OPTIONS -> 204 + Allow."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        allowed = allowed_methods(self.routes, scope)
        if scope["method"] == "OPTIONS" and allowed:
            headers = [(b"allow", ", ".join(allowed).encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif scope["method"] == "HEAD" and "GET" in allowed:

            async def send_headers_only(message: Message) -> None:
                if message["type"] == "http.response.body":
                    message = {**message, "body": b""}
                await send(message)

            await self.app({**scope, "method": "GET"}, receive, send_headers_only)
        else:  # a path no route has (404), or HEAD where there is no GET (405 with Allow)
            await self.app(scope, receive, send)
