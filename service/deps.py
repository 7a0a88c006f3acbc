"""Typed dependencies of the routes: settings, engine, model store, data set store, Redis, auth.

Each is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
hop per dependency per request just to read ``app.state``."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from service.dataset_store import DatasetStore
from service.engine import Engine
from service.errors import Forbidden, Unauthorized
from service.settings import Settings
from service.store import ModelStore


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_datasets(request: Request) -> DatasetStore:
    return request.app.state.datasets  # type: ignore[no-any-return]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


async def require_token(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """With ATNL_API_TOKEN set, the request must carry ``Authorization: Bearer <token>``; without
    one, only loopback clients may change anything (docs/SECURITY.md)."""
    if settings.api_token is None:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise Forbidden(
                "no ATNL_API_TOKEN is set on this server: training, activation, cancel and data set uploads and "
                "deletes are open to loopback clients only"
            )
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), settings.api_token.get_secret_value().encode()
    ):
        raise Unauthorized("this action needs Authorization: Bearer <ATNL_API_TOKEN>")


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
DatasetStoreDep = Annotated[DatasetStore, Depends(get_datasets)]
RedisDep = Annotated[Redis, Depends(get_redis)]
TokenDep = Depends(require_token)
