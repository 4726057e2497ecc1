"""Liveness and readiness probes."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SessionDep, SettingsDep
from api.errors import UpstreamUnavailable
from api.problems import problem_responses

router = APIRouter(tags=["health"])

FUNCTION_PROBE_TIMEOUT_S = 1.5


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
async def readyz(request: Request, session: SessionDep, settings: SettingsDep) -> dict[str, str]:
    """Readiness: the database answers and the function is reachable; 503 otherwise."""
    try:
        await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        raise UpstreamUnavailable("the database is not reachable", retry_after_s=5) from exc
    client: httpx.AsyncClient = request.app.state.probe_client
    if not await function_reachable(client, settings.function_url):
        raise UpstreamUnavailable("the generation function is not reachable", retry_after_s=5)
    return {"status": "ready"}


async def function_reachable(client: httpx.AsyncClient, url: str) -> bool:
    """Any HTTP answer (405 included) means the function is up; no answer in time means down."""
    try:
        await client.options(url, timeout=FUNCTION_PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True
