"""What the function stores after the API gave up, or before a retry, never outlives the
clean-up: the deadline it is sent, a second sweep for a late store, and a result an earlier
attempt left that a new attempt replaces. And a live process keeps its records fresh."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from api_testing import client_for, create_user, put_object, stored_files
from fastapi import FastAPI
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    parse_multipart,
    upload,
    upload_pack,
)
from sqlalchemy import select

from api.forwarding.client import DEADLINE_HEADER, deadline_budget_s
from api.generations.models import Generation, GenerationStatus

LATE_S = 0.3


async def swept(media: Path) -> list[Path]:
    """The stored files once the second sweep has run (LATE_S after the give-up), or 5 s on."""
    for _ in range(100):
        if not stored_files(media):
            break
        await asyncio.sleep(0.05)
    return stored_files(media)


def object_name(request: httpx.Request) -> str:
    parts = parse_multipart(request)
    return f"avatars/{parts['user_id'][0].decode()}/{parts['generation_id'][0].decode()}.png"


@dataclass
class LateStub:
    """The function as the API sees it time out: no answer in time, and then, `late_by_s` after
    the API gave up, it stores its result anyway (a store begun before its deadline)."""

    app: FastAPI | None = None
    late_by_s: float = 0.1
    headers: list[httpx.Headers] = field(default_factory=list)
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.headers.append(request.headers)
        name = object_name(request)

        async def store_late() -> None:
            await asyncio.sleep(self.late_by_s)
            assert self.app is not None
            put_object(self.app.state.store, name, b"\xff\xd8 a late avatar")
            self.stored.set()

        self.task = asyncio.get_running_loop().create_task(store_late())
        raise httpx.ReadTimeout("no answer in time")


@asynccontextmanager
async def late_sweeping(
    app_factory: Any, function: Any, late: LateStub
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    """The function answering through `function`, an app that sweeps a second time LATE_S after
    it gives up (`late` stores into it), its client, and a new user's key."""
    with function_stubbed(function):
        async with (
            app_factory(
                function_url=FUNCTION_URL, function_late_write_s=LATE_S, isolated=False
            ) as app,
            client_for(app) as client,
        ):
            late.app = app
            _, key = await create_user(client)
            yield app, client, key


async def test_a_store_after_the_api_gave_up_is_deleted_by_the_second_sweep(app_factory) -> None:
    stub = LateStub()
    async with late_sweeping(app_factory, stub, stub) as (app, client, key):
        response = await upload(client, key, a_selfie((300, 200)))
        assert_problem(response, 504, "upstream_timeout")
        await stub.stored.wait()
        media = app.state.settings.storage_dir
        assert len(stored_files(media)) == 1  # landed after the runner's first clean-up
        assert await swept(media) == []


async def test_the_second_sweep_spares_a_retry_that_succeeded_meanwhile(app_factory) -> None:
    stub = LateStub(late_by_s=0.05)
    succeeded = FunctionStub()
    answers = iter([stub, succeeded])

    async def function(request: httpx.Request) -> httpx.Response:
        answer = await next(answers)(request)
        if answer.status_code == 200:  # the retry's result, stored where the function stores it
            put_object(app.state.store, object_name(request), b"\xff\xd8 the retry's avatar")
        return answer

    async with late_sweeping(app_factory, function, stub) as (app, client, key):
        image = a_selfie((300, 200))
        first = await upload(client, key, image, idempotency_key="retry-after-timeout")
        assert_problem(first, 504, "upstream_timeout")
        await stub.stored.wait()
        # The client retries at once with the same key: a new run. The create-only store
        # finds the late result; the function stub here just overwrites (tests/cloud_functions
        # cover the store), so the runner sees success.
        retried = await upload(client, key, image, idempotency_key="retry-after-timeout")
        assert retried.status_code == 201, retried.text
        await asyncio.sleep(LATE_S + 0.3)  # the first run's second sweep has run
        files = stored_files(app.state.settings.storage_dir)
        assert len(files) == 1
        assert files[0].read_bytes() == b"\xff\xd8 the retry's avatar"


async def test_each_call_carries_a_deadline_before_the_api_stops_waiting(app_factory) -> None:
    stub = FunctionStub()
    seen: list[float] = []

    async def function(request: httpx.Request) -> httpx.Response:
        seen.append(float(request.headers[DEADLINE_HEADER]) - time.time())
        return await stub(request)

    with function_stubbed(function):
        async with (
            app_factory(function_url=FUNCTION_URL, function_timeout_s=12) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            assert (await upload(client, key, a_selfie((300, 200)))).status_code == 201
    assert deadline_budget_s(12) == 10
    assert deadline_budget_s(4) == 3  # a short timeout keeps three quarters
    assert len(seen) == 1
    assert 9 < seen[0] <= 10


@dataclass
class ConflictOnceStub(FunctionStub):
    """The first call finds a result an earlier attempt stored under the name (and answers 409
    conflict, as the create-only store does); later calls answer like the function. Records
    whether that stale object was still there at each call."""

    app: FastAPI | None = None
    stale_present: list[bool] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        name = object_name(request)
        if not self.stale_present:
            put_object(self.app.state.store, name, b"\xff\xd8 an earlier attempt's")
            self.stale_present.append(True)
            body = {"error": "conflict", "detail": f"an object named {name} already exists"}
            return httpx.Response(409, json=body)
        self.stale_present.append(self.app.state.store.path(name).exists())
        return await super().__call__(request)


async def test_an_earlier_attempts_result_is_dropped_and_the_function_asked_again(
    app_factory,
) -> None:
    with function_stubbed(ConflictOnceStub()) as stub:
        async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
            stub.app = app
            _, key = await create_user(client)
            response = await upload(client, key, a_selfie((300, 200)))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    assert stub.stale_present == [True, False]  # gone before the function was asked again


async def test_a_conflict_on_one_animal_of_a_pack_is_asked_again_for_that_one(
    app_factory,
) -> None:
    stub = FunctionStub(animal_errors={"cat": "conflict"})
    calls: list[list[str]] = []

    async def function(request: httpx.Request) -> httpx.Response:
        parts = parse_multipart(request)
        animals = parts["animals"][0].decode().split(",") if "animals" in parts else None
        calls.append(animals or [parts["animal"][0].decode()])
        if len(calls) == 2:
            stub.animal_errors = {}
        return await stub(request)

    with function_stubbed(function):
        async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
            _, key = await create_user(client)
            response = await upload_pack(client, key, a_selfie((300, 200)), "fox,cat")
    assert response.status_code == 201, response.text
    assert [g["status"] for g in response.json()["generations"]] == ["succeeded", "succeeded"]
    assert calls == [["fox", "cat"], ["cat"]]


async def test_a_pack_animals_re_ask_that_times_out_is_swept_again(app_factory) -> None:
    late = LateStub()
    answers = iter([FunctionStub(animal_errors={"cat": "conflict"}), late])

    async def function(request: httpx.Request) -> httpx.Response:
        return await next(answers)(request)

    async with late_sweeping(app_factory, function, late) as (app, client, key):
        response = await upload_pack(client, key, a_selfie((300, 200)), "fox,cat")
        assert response.status_code == 201, response.text
        statuses = [(g["animal"], g["status"]) for g in response.json()["generations"]]
        assert statuses == [("fox", "succeeded"), ("cat", "failed")]
        await late.stored.wait()
        media = app.state.settings.storage_dir
        assert len(stored_files(media)) == 1  # cat's, landed after its re-ask was given up on
        assert await swept(media) == []


# --- the heartbeat ---------------------------------------------------------------------------


async def test_a_live_process_keeps_its_records_fresh_so_no_sweep_takes_them(
    app_factory,
) -> None:
    stale_s = 0.6
    stub = FunctionStub(gate=asyncio.Event())
    with function_stubbed(stub):
        async with (
            app_factory(
                function_url=FUNCTION_URL, generation_stale_after_s=stale_s, isolated=False
            ) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            accepted = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
            generation_id = uuid.UUID(accepted.json()["id"])
            await stub.arrived.wait()
            touched = []
            for _ in range(4):  # two stale periods while the function works
                await asyncio.sleep(stale_s / 2)
                async with app.state.sessionmaker() as session:
                    touched.append(
                        await session.scalar(
                            select(Generation.updated_at).where(Generation.id == generation_id)
                        )
                    )
                assert await app.state.runner.unfinished(on_start=False) == []
            assert len(set(touched)) >= 3  # the heartbeat moved it on
            stub.gate.set()
            await app.state.runner.task_for(generation_id)
            async with app.state.sessionmaker() as session:
                generation = await session.get(Generation, generation_id)
                assert generation is not None
                assert generation.status is GenerationStatus.succeeded
                assert generation.attempts == 1  # nobody took it over
    assert len(stub.received) == 1


async def test_recovery_of_a_dead_processs_work_is_logged(app_factory, caplog: Any) -> None:
    stub = FunctionStub()
    with function_stubbed(stub):
        async with (
            app_factory(
                function_url=FUNCTION_URL, generation_stale_after_s=0.4, isolated=False
            ) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            stub.gate = asyncio.Event()
            accepted = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
            generation_id = uuid.UUID(accepted.json()["id"])
            await stub.arrived.wait()
            # This process "dies": its work stops, and with it the heartbeat.
            app.state.runner.task_for(generation_id).cancel()
            await asyncio.sleep(0.05)
            app.state.runner._held.clear()
            async with app.state.sessionmaker() as session, session.begin():
                generation = await session.get(Generation, generation_id)
                assert generation is not None
                generation.status = GenerationStatus.processing
            stub.gate.set()
            with caplog.at_level("WARNING", logger="api.generations.runner"):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    async with app.state.sessionmaker() as session:
                        found = await session.get(Generation, generation_id)
                        assert found is not None
                        if found.status is GenerationStatus.succeeded:
                            break
                    await asyncio.sleep(0.05)
    assert found.status is GenerationStatus.succeeded
    assert f"generation {generation_id} was left unfinished by a process that stopped" in (
        caplog.text
    )


async def test_work_released_at_a_clean_shutdown_is_resumed_without_a_warning(
    app_factory, caplog: Any
) -> None:
    stub = FunctionStub(gate=asyncio.Event())
    with function_stubbed(stub):
        async with (
            app_factory(
                function_url=FUNCTION_URL, shutdown_grace_s=0, isolated=False, keep_tables=True
            ) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            accepted = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
            generation_id = uuid.UUID(accepted.json()["id"])
            await stub.arrived.wait()
        # Shut down mid-work: the record went back to pending, its attempt counted.
        stub.gate.set()
        with caplog.at_level("INFO", logger="api.generations.runner"):
            async with app_factory(function_url=FUNCTION_URL, isolated=False) as app:
                await app.state.runner.task_for(generation_id)
                async with app.state.sessionmaker() as session:
                    found = await session.get(Generation, generation_id)
                    assert found is not None
                    assert found.status is GenerationStatus.succeeded
                    assert found.attempts == 2
    assert "recovering 1 unfinished generations or packs" in caplog.text
    assert "process that stopped" not in caplog.text
