"""The FastAPI application: `create_app()` wires settings, lifespan, routers and error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import AsyncSession

from api import animals, health, media
from api.access_log import install_access_log_filter, install_httpx_log_filter
from api.body_limit import BodyLimit
from api.config import Settings, get_settings
from api.db import build_engine, build_sessionmaker
from api.demo.router import build_router as build_demo_router
from api.error_handlers import install_error_handlers
from api.forwarding import build_function_client
from api.generations.router import router as generations_router
from api.generations.runner import ForwarderFactory, GenerationRunner
from api.observability.function_calls import TimedForwarder
from api.observability.metrics import Metrics
from api.observability.middleware import Observability
from api.observability.router import loopback_metrics
from api.observability.router import router as metrics_router
from api.packs.router import router as packs_router
from api.problems import add_problem_schema
from api.problems import router as problems_router
from api.storage import build_store
from api.users.router import router as users_router
from api.webhooks.delivery import Deliverer, Network
from api.webhooks.router import router as webhooks_router
from api.webhooks.secrets import SecretBox
from api.webhooks.service import reseal_secrets
from api.work import announce, build_queue
from api.work.router import router as work_router

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the engine, the session factory, the object store and shared HTTP clients."""
    settings: Settings = app.state.settings
    engine = build_engine(settings.database_url, pool_size=settings.database_pool_size)
    app.state.engine = engine
    app.state.sessionmaker = build_sessionmaker(engine)
    app.state.store = build_store(settings)
    app.state.probe_client = httpx.AsyncClient()
    try:
        async with generation_runner(app, settings):
            yield
    finally:
        await app.state.probe_client.aclose()
        await engine.dispose()
        app.state.metrics.close()


@asynccontextmanager
async def generation_runner(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The shared function client, the runner of generations, the webhook deliverer and the
    work queue (api.work) that runs them."""
    forwarder_factory: ForwarderFactory = app.state.forwarder_factory
    metrics: Metrics = app.state.metrics
    forwarder = TimedForwarder(forwarder_factory(settings), metrics)

    def session_factory() -> AsyncSession:
        # Looked up at each call: tests swap the app's sessionmaker after start-up.
        session: AsyncSession = app.state.sessionmaker()
        return session

    runner = GenerationRunner(
        session_factory,
        forwarder,
        app.state.store,
        max_concurrency=settings.function_max_connections,
        stale_after_s=settings.generation_stale_after_s,
        late_write_s=settings.function_late_write_s,
        metrics=metrics,
    )
    deliverer = Deliverer(
        session_factory,
        settings,
        app.state.secret_box,
        app.state.webhook_network,
        metrics=metrics,
    )
    queue = build_queue(settings, runner, deliverer)
    runner.on_events = partial(announce, queue)
    app.state.function_client = forwarder
    app.state.runner = runner
    app.state.deliverer = deliverer
    app.state.work_queue = queue
    if settings.work_queue == "cloud_tasks":
        # Imported only here: google-auth's JWT check loads `cryptography` (10 MB of RSS).
        from api.work.oidc import OidcVerifier

        app.state.oidc_verifier = OidcVerifier(settings.oidc_certs_url, app.state.probe_client)
    await queue.start()
    try:
        await reseal_secrets(session_factory, app.state.secret_box)
    except Exception:
        # A database not up yet must not keep the API down; the next start tries again.
        logger.exception("re-encrypting webhook secrets failed")
    try:
        async with loopback_metrics(app, settings, session_factory):
            yield
    finally:
        await queue.aclose()
        await runner.shutdown(grace_s=settings.shutdown_grace_s)
        await forwarder.aclose()
        await deliverer.aclose()


def create_app(
    settings: Settings | None = None,
    *,
    forwarder_factory: ForwarderFactory = build_function_client,
    webhook_network: Network | None = None,
) -> FastAPI:
    """The API application for these settings (by default, the environment's).

    `forwarder_factory` builds the client that calls the function, and `webhook_network` the
    resolver and transport of webhook deliveries (tests hand in their own).
    """
    # /docs and /redoc load Swagger UI and ReDoc from the API itself (fastapi-offline's copies,
    # under /docs/assets), not from a CDN: the docs work offline.
    app = FastAPIOffline(
        docs_url="/docs",
        redoc_url="/redoc",
        static_url="/docs/assets",
        title="animal-avatar",
        version="0.1.0",
        summary="Turn a selfie into an animal character.",
        lifespan=lifespan,
    )
    app.state.settings = settings = settings or get_settings()
    app.state.forwarder_factory = forwarder_factory
    app.state.webhook_network = webhook_network or Network()
    app.state.secret_box = SecretBox(settings.webhook_encryption_key.get_secret_value())
    app.state.metrics = metrics = Metrics.create(
        enabled=settings.metrics_enabled, multiprocess_dir=settings.prometheus_multiproc_dir
    )
    for router in (
        users_router,
        generations_router,
        packs_router,
        webhooks_router,
        animals.router,
        health.router,
        media.router,
        problems_router,
        work_router,
    ):
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    if settings.demo_page:
        app.include_router(build_demo_router(settings))
    # The uploads stream under their own limit (api.uploads); every other body is small.
    uploads = {("POST", generations_router.prefix), ("POST", packs_router.prefix)}
    app.add_middleware(BodyLimit, max_bytes=settings.max_json_body_bytes, streamed=uploads)
    # Added last: the outermost of the app's own middleware, it sees every request's answer.
    app.add_middleware(Observability, metrics=metrics)
    install_error_handlers(app)
    install_access_log_filter()
    install_httpx_log_filter()
    install_openapi(app)
    return app


def install_openapi(app: FastAPI) -> None:
    """OpenAPI with the Problem schema the routes' error responses refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_problem_schema(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
