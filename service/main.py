"""The application factory: ``create_app()`` builds the FastAPI app; the lifespan loads the model.

uvicorn --factory service.main:create_app    (what ``atnl serve`` runs)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from models.training import TrainConfig
from service import following, prometheus
from service.body_caps import BodyCaps
from service.dataset_store import DatasetStore, open_datasets
from service.deps import is_loopback
from service.disconnect import ClientWatch
from service.engine import Engine
from service.errors import install_problem_handlers
from service.http_methods import ImplicitMethods
from service.objects import StoreUnavailable
from service.openapi import install_openapi
from service.prometheus import RequestMetrics
from service.routes import datasets as dataset_routes
from service.routes import health, inference, models, playground
from service.routes import jobs as job_routes
from service.settings import Settings, get_settings
from service.store import ModelStore, open_store
from service.training import job_queue
from service.version import package_version

log = logging.getLogger("atnl.service")

DESCRIPTION = """
Semantics-guided latent representations (Angular Triplet-Neighbor Loss) as a service:
encode images to unit latents, decode latents, interpolate along great circles (slerp),
hallucinate labelled few-shot data, upload labelled data sets, and train new models as
RQ jobs.

Images in: PNG or JPEG (any size, mode, background); images out: PNG (base64 in JSON),
PNG strips, animated GIF, zip. Data sets in: a zip or tar.gz of labelled images.
Errors: application/problem+json (the `Problem` schema). With ATNL_API_TOKEN set,
POST /v1/train, POST /v1/models/{id}/activate, DELETE /v1/jobs/{id}, POST /v1/datasets
and DELETE /v1/datasets/{id} need `Authorization: Bearer <token>`; without one they
answer loopback clients only. Everything else is open.

This document is this deployment's: limits come from its ATNL_* settings, and the
latent length and label names from its active model. The contract, with every
setting, error and metric: docs/API.md.
"""


async def start_bootstrap(settings: Settings) -> asyncio.subprocess.Process:
    """Train the default model in a child process; its log lines go to our stderr."""
    log.info("model store %s is empty: training the default model (see atnl.bootstrap lines)", settings.model_store)
    env = {
        **os.environ,
        "ATNL_MODEL_STORE": str(settings.model_store),
        "ATNL_MODEL_CACHE": str(settings.model_cache),
        "ATNL_REDIS_URL": settings.redis_url,
        "ATNL_REDIS_ACTIVATION_CHANNEL": json.dumps(settings.redis_activation_channel),
        "ATNL_BOOTSTRAP_TRAIN": json.dumps(settings.bootstrap_train),
        "ATNL_DEVICE": settings.device,
        "ATNL_LOG_LEVEL": settings.log_level,
    }
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "service.bootstrap", env=env)


def opened(store: ModelStore, datasets: DatasetStore) -> str | None:
    """Make the store usable (the directory or bucket), clear what killed uploads left, and say
    what to serve (None: the store is empty)."""
    store.ensure()
    datasets.ensure().remove_partials()
    return store.default_id()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.api_token is None and not is_loopback(settings.host):
        log.warning(
            "ATNL_API_TOKEN is not set and the API binds %s: training, activation and job cancel answer "
            "loopback clients only (403 to others); set ATNL_API_TOKEN to allow them from other hosts",
            settings.host,
        )
    store = open_store(settings)
    engine = Engine(settings, store)
    app.state.store, app.state.engine = store, engine
    app.state.datasets = open_datasets(settings)
    app.state.redis = job_queue.connect(settings)  # connects lazily: the API starts without Redis
    prometheus.MODEL_LOADED.set(0)
    child: asyncio.subprocess.Process | None = None
    bootstrap = settings.bootstrap_default_model
    try:
        model_id = await anyio.to_thread.run_sync(opened, store, app.state.datasets)
    except StoreUnavailable as e:  # not ready until it answers and names a model: the follower keeps trying
        log.error("%s; /readyz stays 503 until the store answers", e.detail)
        model_id, bootstrap = None, False
    if model_id is not None:
        try:
            await engine.activate(model_id, write_pointer=store.active_id() is None)
        except Exception:
            log.exception("could not load model %s; /readyz stays 503 until a model is activated", model_id)
    elif bootstrap:
        child = await start_bootstrap(settings)
    follower = asyncio.create_task(following.follow(engine))
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        if child is not None and child.returncode is None:
            child.terminate()
            await child.wait()
        app.state.redis.close()


def operation_id(route: APIRoute) -> str:
    """OpenAPI operationId: the route function's name (encode, get_job, ...), what generated clients call."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the ATNL_* environment."""
    app = FastAPI(
        title="ATNL service",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings or get_settings()
    app.state.settings.check_training_defaults(TrainConfig().to_dict())
    install_problem_handlers(app)
    install_openapi(app)
    for router in (health.router, models.router, inference.router, job_routes.router, dataset_routes.router):
        app.include_router(router)
    app.include_router(playground.router)

    app.add_middleware(ClientWatch)  # innermost: lets queued inference see its client leave
    app.add_middleware(ImplicitMethods, routes=app.routes)
    app.add_middleware(BodyCaps, settings=app.state.settings)
    app.add_middleware(RequestMetrics)  # outermost of ours: counts the body caps' 413s too
    return app
