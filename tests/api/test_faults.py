"""Faults: the function down, slow, failing or talking nonsense; the database restarted; the API
restarted with work in flight. Each ends in a problem+json answer or a finished record."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from api_testing import UNREACHABLE_URL, auth, client_for, create_user
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    upload,
    wait_finished,
)
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url

from api.db import build_engine, build_sessionmaker, utcnow
from api.generations.models import Generation, GenerationInput, GenerationStatus
from api.main import create_app

FAST_RETRIES = {"function_max_attempts": 2, "function_retry_budget_s": 1.0}


async def only_record(app: FastAPI) -> tuple[Generation, GenerationInput | None]:
    async with app.state.sessionmaker() as session:
        (generation,) = (await session.execute(select(Generation))).scalars().all()
        stored = await session.get(GenerationInput, generation.id)
    return generation, stored


async def only_record_in(database_url: str) -> tuple[Generation, GenerationInput | None]:
    """The one record, read straight from the database (no app running)."""
    engine = build_engine(database_url)
    try:
        async with build_sessionmaker(engine)() as session:
            (generation,) = (await session.execute(select(Generation))).scalars().all()
            return generation, await session.get(GenerationInput, generation.id)
    finally:
        await engine.dispose()


async def upload_and_expect(app: FastAPI, status: int, code: str) -> Generation:
    """Upload once; the answer is the problem, the record failed with the same code."""
    async with client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, a_selfie((200, 150)))
    assert_problem(response, status, code)
    generation, stored = await only_record(app)
    assert generation.status is GenerationStatus.failed
    assert generation.error_code == code
    assert stored is None
    return generation


async def test_function_down_is_503_with_retry_after(app_factory) -> None:
    async with app_factory(function_url=UNREACHABLE_URL, isolated=False, **FAST_RETRIES) as app:
        async with client_for(app) as client:
            _, key = await create_user(client)
            response = await upload(client, key, a_selfie((200, 150)))
        assert_problem(response, 503, "upstream_unavailable")
        assert int(response.headers["retry-after"]) > 0
        generation, stored = await only_record(app)
    assert (generation.status, generation.error_code) == ("failed", "upstream_unavailable")
    assert generation.attempts == 1
    assert stored is None


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that reads requests and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(-1)
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()


async def test_function_slower_than_the_timeout_is_504(app_factory) -> None:
    async with (
        silent_server() as url,
        app_factory(function_url=url, function_timeout_s=0.3, isolated=False) as app,
    ):
        await upload_and_expect(app, 504, "upstream_timeout")


@pytest.mark.parametrize(
    ("answer", "calls"),
    [
        (httpx.Response(500, text="Internal Server Error"), 1),
        (httpx.Response(429, headers={"Retry-After": "0"}, text="quota"), 2),
        (httpx.Response(503, json={"error": "upstream_unavailable", "detail": "vertex down"}), 2),
        (httpx.Response(200, text="<html>proxy error</html>"), 1),
        (httpx.Response(200, json={"faces": []}), 1),
    ],
)
async def test_function_failures_are_503_and_recorded(app_factory, answer, calls) -> None:
    with respx.mock:
        route = respx.post(FUNCTION_URL).mock(return_value=answer)
        async with app_factory(function_url=FUNCTION_URL, isolated=False, **FAST_RETRIES) as app:
            await upload_and_expect(app, 503, "upstream_unavailable")
    assert route.call_count == calls


def with_application_name(url: str, name: str) -> str:
    return make_url(url).update_query_dict({"application_name": name}).render_as_string(False)


def terminate_backends(application_name: str) -> int:
    """pg_terminate_backend for the app's connections, from a connection of our own."""
    engine = create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": application_name},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(killed)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL only")
async def test_database_connections_killed_mid_request_still_finish_the_record(
    app_factory, database_url
) -> None:
    name = f"u6fault{uuid.uuid4().hex[:8]}"
    killed: list[int] = []
    stub = FunctionStub()

    async def kill_then_answer(request: httpx.Request) -> httpx.Response:
        # While the function "works", every connection the API holds is cut, as by a restart.
        killed.append(await asyncio.to_thread(terminate_backends, name))
        return await stub(request)

    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=kill_then_answer)
        url = with_application_name(database_url, name)
        async with app_factory(function_url=FUNCTION_URL, database_url=url, isolated=False) as app:
            async with client_for(app) as client:
                _, key = await create_user(client)
                response = await upload(client, key, a_selfie((200, 150)))
                assert response.status_code == 201, response.text
                assert response.json()["status"] == "succeeded"
                listed = (await client.get("/v1/generations", headers=auth(key))).json()
            generation, stored = await only_record(app)
    assert killed[0] >= 1
    assert listed["items"][0]["status"] == "succeeded"
    assert generation.status is GenerationStatus.succeeded
    assert stored is None


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[FastAPI]:
    """An app started and stopped, its data left in the database (a process's lifetime)."""
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


async def test_async_work_in_flight_survives_an_api_restart(settings_factory, app_factory) -> None:
    held = FunctionStub(gate=asyncio.Event())  # never released: the first process dies first
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=held)
        first = settings_factory(function_url=FUNCTION_URL, shutdown_grace_s=0.1)
        async with running(first) as app, client_for(app) as client:
            _, key = await create_user(client)
            accepted = await upload(client, key, a_selfie((200, 150)), prefer="respond-async")
            assert accepted.status_code == 202
            await asyncio.wait_for(held.arrived.wait(), 10)
    # The first process is gone; its work was handed back, upload and all.
    generation, stored = await only_record_in(first.database_url)
    assert generation.status is GenerationStatus.pending
    assert stored is not None
    fresh = FunctionStub()
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=fresh)
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            done = await wait_finished(client, key, accepted.headers["location"])
            _, stored = await only_record(app)
    assert done["status"] == "succeeded"
    assert done["image_url"]
    assert stored is None
    assert len(fresh.received) == 1


async def test_sync_work_keeps_nothing_and_a_restart_mid_way_fails_it_retryably(
    settings_factory, app_factory
) -> None:
    held = FunctionStub(gate=asyncio.Event())  # never released: the process stops first
    image = a_selfie((200, 150))
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=held)
        first = settings_factory(function_url=FUNCTION_URL, shutdown_grace_s=0.1)
        async with running(first) as app, client_for(app) as client:
            _, key = await create_user(client)
            waiting = asyncio.create_task(upload(client, key, image, idempotency_key="k1"))
            await asyncio.wait_for(held.arrived.wait(), 10)
            generation, stored = await only_record(app)
            # The selfie is held by the request only: nothing of it is in the database.
            assert (generation.status, stored) == (GenerationStatus.processing, None)
            waiting.cancel()
    generation, stored = await only_record_in(first.database_url)
    assert (generation.status, generation.error_code) == ("failed", "upstream_unavailable")
    assert stored is None
    fresh = FunctionStub()
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=fresh)
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            retried = await upload(client, key, image, idempotency_key="k1")
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == str(generation.id)
    assert len(fresh.received) == 1


async def seed(app: FastAPI, user_id: str, **fields: Any) -> uuid.UUID:
    async with app.state.sessionmaker() as session, session.begin():
        generation = Generation(user_id=uuid.UUID(user_id), animal="cat", **fields)
        session.add(generation)
        await session.flush()
        if fields.pop("with_input", True):
            session.add(
                GenerationInput(
                    generation_id=generation.id, image=a_selfie((64, 48)), content_type="image/jpeg"
                )
            )
    return generation.id


async def test_start_up_recovery_resumes_or_fails_unfinished_records(
    settings_factory, app_factory
) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    async with running(settings_factory()) as app, client_for(app) as client:
        user, key = await create_user(client)
        pending = await seed(app, user["id"], status=GenerationStatus.pending)
        stale = await seed(
            app, user["id"], status=GenerationStatus.processing, attempts=1, updated_at=long_ago
        )
        lost = await seed(
            app, user["id"], status=GenerationStatus.processing, attempts=1, updated_at=long_ago
        )
        live = await seed(app, user["id"], status=GenerationStatus.processing, attempts=1)
        async with app.state.sessionmaker() as session, session.begin():
            await session.execute(
                GenerationInput.__table__.delete().where(GenerationInput.generation_id == lost)
            )
    stub = FunctionStub()
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=stub)
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            for generation_id in (pending, stale, lost):
                await wait_finished(client, key, f"/v1/generations/{generation_id}")
            async with app.state.sessionmaker() as session:
                rows = {g.id: g for g in (await session.execute(select(Generation))).scalars()}
    assert rows[pending].status is GenerationStatus.succeeded
    assert rows[stale].status is GenerationStatus.succeeded
    assert (rows[lost].status, rows[lost].error_code) == ("failed", "upstream_timeout")
    assert rows[live].status is GenerationStatus.processing  # another process may own it
    assert len(stub.received) == 2


async def test_a_client_hanging_up_mid_generation_does_not_lose_the_record(app_factory) -> None:
    held = FunctionStub(gate=asyncio.Event())
    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=held)
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            waiting = asyncio.create_task(upload(client, key, a_selfie((200, 150))))
            await asyncio.wait_for(held.arrived.wait(), 10)
            waiting.cancel()  # the phone lost its network while the function worked
            with pytest.raises(asyncio.CancelledError):
                await waiting
            held.gate.set()
            (item,) = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
            done = await wait_finished(client, key, f"/v1/generations/{item['id']}")
            _, stored = await only_record(app)
    assert done["status"] == "succeeded"
    assert stored is None


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL only")
async def test_a_connection_killed_inside_the_finishing_transaction_is_retried(
    app_factory, caplog
) -> None:
    killed: list[int] = []

    def kill_own_backend(conn, cursor, statement, parameters, context, executemany) -> None:
        # The first time the outcome is written, the server ends this very connection.
        if killed or not statement.startswith("UPDATE generations SET status"):
            return
        pid = conn.connection.driver_connection.info.backend_pid
        engine = create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        engine.dispose()
        killed.append(pid)

    with respx.mock:
        respx.post(FUNCTION_URL).mock(side_effect=FunctionStub())
        async with (
            app_factory(function_url=FUNCTION_URL, isolated=False) as app,
            client_for(app) as client,
        ):
            event.listen(app.state.engine.sync_engine, "before_cursor_execute", kill_own_backend)
            _, key = await create_user(client)
            response = await upload(client, key, a_selfie((200, 150)))
            generation, stored = await only_record(app)
    assert killed
    assert "database connection lost; retrying" in caplog.text
    assert response.status_code == 201, response.text
    assert generation.status is GenerationStatus.succeeded
    assert stored is None


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL only")
async def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout() -> None:
    # No pool_pre_ping round trip: the checkout notices the ended connection by itself.
    engine = build_engine(os.environ["TEST_DATABASE_URL"], pool_size=1)
    try:
        async with engine.connect() as conn:
            first = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert not engine.pool._pre_ping  # type: ignore[attr-defined]
        admin = create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"
            for _ in range(100):
                if not other.execute(text(gone), {"pid": first}).scalar_one():
                    break
                await asyncio.sleep(0.02)
        admin.dispose()
        async with engine.connect() as conn:
            second = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await engine.dispose()
