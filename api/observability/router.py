"""GET /metrics: the Prometheus text format, for the admin key (Prometheus sends it as its
scrape's bearer token), or anyone when ENVIRONMENT=development; and the same without a key on
127.0.0.1:METRICS_PORT when that is set (`loopback_metrics`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from api.config import Settings
from api.deps import BearerDep, SessionDep, SettingsDep, require_admin
from api.generations.models import Generation, GenerationStatus
from api.observability.metrics import Metrics
from api.webhooks.models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

UNFINISHED_GENERATIONS = select(func.count()).where(
    Generation.status.in_((GenerationStatus.pending, GenerationStatus.processing))
)
PENDING_DELIVERIES = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.pending)


# Not in the OpenAPI document, like the demo page: it is for Prometheus, not for the app's
# developers (and it is open in development, which a schema saying "bearer key" would belie).
@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request, session: SessionDep, settings: SettingsDep, credentials: BearerDep
) -> Response:
    """The API's metrics (see the README's Observability section)."""
    if not settings.is_development:
        await require_admin(settings, session, credentials)
    recorder: Metrics = request.app.state.metrics
    await record_queue_depth(session, recorder)
    # Reading every worker's files (multiprocess mode) is file I/O: off the event loop.
    body = await run_in_threadpool(recorder.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def record_queue_depth(session: AsyncSession, recorder: Metrics) -> None:
    """The work waiting, as the database has it (whichever queue runs it, in every process)."""
    recorder.set_queue_depth(
        "generation", (await session.execute(UNFINISHED_GENERATIONS)).scalar_one()
    )
    recorder.set_queue_depth("webhook", (await session.execute(PENDING_DELIVERIES)).scalar_one())


@asynccontextmanager
async def loopback_metrics(
    app: FastAPI, settings: Settings, session_factory: Callable[[], AsyncSession]
) -> AsyncIterator[None]:
    """While the app runs, its metrics on 127.0.0.1:METRICS_PORT (if set), with the queue depth
    read every METRICS_REFRESH_S (that server cannot ask the database at each scrape)."""
    recorder: Metrics = app.state.metrics
    port = settings.metrics_port
    if not settings.metrics_enabled or port is None:
        yield
        return
    stop = recorder.serve_on_loopback(port)
    if stop is None:
        logger.info("metrics port %d is served by another worker", port)
    await _refresh(recorder, session_factory)  # a scrape right after start has it too
    refresh = asyncio.create_task(_refresh_forever(recorder, settings, session_factory))
    try:
        yield
    finally:
        refresh.cancel()
        await asyncio.gather(refresh, return_exceptions=True)
        if stop is not None:
            await asyncio.to_thread(stop)


async def _refresh_forever(
    recorder: Metrics, settings: Settings, session_factory: Callable[[], AsyncSession]
) -> None:
    while True:
        await asyncio.sleep(settings.metrics_refresh_s)
        await _refresh(recorder, session_factory)


async def _refresh(recorder: Metrics, session_factory: Callable[[], AsyncSession]) -> None:
    try:
        async with session_factory() as session:
            await record_queue_depth(session, recorder)
    except Exception:
        # A database not up yet must not keep the API down; the next refresh tries again.
        logger.exception("the work queue's depth could not be read")
