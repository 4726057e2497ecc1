"""No stored image outlives its record: deleted mid-work, failed on a timeout, erased users."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_testing import (
    add_generation,
    auth,
    client_for,
    create_user,
    put_object,
    stored_files,
)
from fastapi import FastAPI
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    upload,
)

from api.generations.models import GenerationStatus


@dataclass
class StoringStub(FunctionStub):
    """Like the function: stores the image under the generation's name, then answers."""

    app: FastAPI | None = None
    fail_with: Exception | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        response = await super().__call__(request)
        parts = self.received[-1]
        name = f"avatars/{parts['user_id'][0].decode()}/{parts['generation_id'][0].decode()}.jpg"
        assert self.app is not None
        put_object(self.app.state.store, name, b"\xff\xd8 an avatar")
        if self.fail_with is not None:
            raise self.fail_with
        return response


@pytest.fixture
def stub() -> Any:
    with function_stubbed(StoringStub(gate=asyncio.Event())) as stub:
        yield stub


async def finish_work(app: FastAPI, generation_id: str) -> None:
    task = app.state.runner.task_for(uuid.UUID(generation_id))
    if task is not None:
        await task


async def test_deleting_a_generation_in_flight_leaves_no_image(app_factory, stub) -> None:
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        stub.app = app
        _, key = await create_user(client)
        accepted = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
        generation_id = accepted.json()["id"]
        await stub.arrived.wait()
        deleted = await client.delete(f"/v1/generations/{generation_id}", headers=auth(key))
        assert deleted.status_code == 204
        stub.gate.set()  # the function now stores its image and answers
        await finish_work(app, generation_id)
        assert stub.received  # the function did run
        assert stored_files(app.state.settings.storage_dir) == []


async def test_erasing_a_user_with_work_in_flight_leaves_no_image(app_factory, stub) -> None:
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        stub.app = app
        _, key = await create_user(client)
        accepted = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
        await stub.arrived.wait()
        assert (await client.delete("/v1/users/me", headers=auth(key))).status_code == 204
        stub.gate.set()
        await finish_work(app, accepted.json()["id"])
        assert stored_files(app.state.settings.storage_dir) == []


async def test_a_timed_out_generation_leaves_no_image(app_factory, stub) -> None:
    # The function stored its result, but the answer never arrived in time.
    stub.gate = None
    stub.fail_with = httpx.ReadTimeout("too slow")
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        stub.app = app
        _, key = await create_user(client)
        response = await upload(client, key, a_selfie((300, 200)))
        assert_problem(response, 504, "upstream_timeout")
        assert len(stub.received) == 1
        assert stored_files(app.state.settings.storage_dir) == []


async def test_deleting_a_failed_record_deletes_the_image_it_does_not_name(
    client, make_user, db, app
) -> None:
    user, key = await make_user()
    generation = await add_generation(
        db, user["id"], status=GenerationStatus.failed, error_code="upstream_timeout"
    )
    for extension in ("jpg", "png"):
        name = f"avatars/{user['id']}/{generation.id}.{extension}"
        put_object(app.state.store, name, b"late")
    neighbour = f"avatars/{user['id']}/{uuid.uuid4()}.jpg"
    put_object(app.state.store, neighbour, b"keep")
    response = await client.delete(f"/v1/generations/{generation.id}", headers=auth(key))
    assert response.status_code == 204
    assert stored_files(app.state.settings.storage_dir) == [app.state.store.path(neighbour)]
