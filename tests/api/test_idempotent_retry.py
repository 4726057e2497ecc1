"""Retrying with the same Idempotency-Key after an outage runs the work again; after the
photo's own failure, it replays that failure."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from api_testing import client_for, create_user
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    upload,
    wait_finished,
)
from sqlalchemy import func, select

from api.generations.models import Generation, GenerationInput

ONE_TRY = {"function_max_attempts": 1, "rate_limit_generations": 1, "rate_limit_window_s": 600}


@pytest.fixture
def stub() -> Any:
    down = FunctionStub(status=503, body={"error": "upstream_unavailable", "detail": "down"})
    with function_stubbed(down) as stub:
        yield stub


def back_up(stub: FunctionStub) -> None:
    stub.status, stub.body = 200, None


async def test_a_retry_after_503_succeeds_with_the_same_record(app_factory, db, stub) -> None:
    image = a_selfie((320, 240))
    async with app_factory(function_url=FUNCTION_URL, **ONE_TRY) as app, client_for(app) as client:
        _, key = await create_user(client)
        failed = await upload(client, key, image, idempotency_key="flaky")
        body = assert_problem(failed, 503, "upstream_unavailable")
        again = await upload(client, key, image, idempotency_key="flaky")
        assert_problem(again, 503, "upstream_unavailable")  # still down: a new attempt, failed
        back_up(stub)
        # The limit is one generation: a retry is not a new one.
        retried = await upload(client, key, image, idempotency_key="flaky")
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "succeeded"
        assert retried.json()["error"] is None
        replayed = await upload(client, key, image, idempotency_key="flaky")
        assert replayed.json()["id"] == retried.json()["id"]
    assert len(stub.received) == 3  # the first try, two retries; the replay called nothing
    (record,) = (await db.execute(select(Generation))).scalars().all()
    assert str(record.id) == retried.json()["id"]
    assert record.object_name
    assert body["detail"] == "down"
    assert await db.scalar(select(func.count()).select_from(GenerationInput)) == 0


async def test_an_async_retry_after_an_outage_runs_in_the_background(app_factory, stub) -> None:
    image = a_selfie((320, 240))
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False, **ONE_TRY) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        first = await upload(client, key, image, prefer="respond-async", idempotency_key="k")
        assert first.status_code == 202
        done = await wait_finished(client, key, first.headers["location"])
        assert done["error"]["code"] == "upstream_unavailable"
        back_up(stub)
        retried = await upload(client, key, image, prefer="respond-async", idempotency_key="k")
        assert retried.status_code == 202
        assert retried.json()["id"] == first.json()["id"]
        done = await wait_finished(client, key, first.headers["location"])
        assert done["status"] == "succeeded"
        assert uuid.UUID(done["id"])


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ({"error": "no_face_detected", "detail": "no face"}, 422, "no_face_detected"),
        ({"error": "content_blocked", "detail": "refused"}, 422, "content_blocked"),
        ({"error": "invalid_image", "detail": "truncated"}, 422, "invalid_image"),
    ],
)
async def test_a_final_failure_replays_as_it_is(app_factory, stub, answer, status, code) -> None:
    stub.status, stub.body = 422, answer
    image = a_selfie((320, 240))
    async with app_factory(function_url=FUNCTION_URL, **ONE_TRY) as app, client_for(app) as client:
        _, key = await create_user(client)
        first = assert_problem(await upload(client, key, image, idempotency_key="x"), status, code)
        back_up(stub)
        again = assert_problem(await upload(client, key, image, idempotency_key="x"), status, code)
    assert again == first
    assert len(stub.received) == 1


async def test_a_retry_with_another_body_is_still_409(app_factory, stub) -> None:
    async with app_factory(function_url=FUNCTION_URL, **ONE_TRY) as app, client_for(app) as client:
        _, key = await create_user(client)
        await upload(client, key, a_selfie((320, 240)), idempotency_key="x")
        back_up(stub)
        other = await upload(client, key, a_selfie((321, 240)), idempotency_key="x")
        assert_problem(other, 409, "conflict")
    assert len(stub.received) == 1


async def test_a_timed_out_generation_can_be_retried(app_factory, stub) -> None:
    stub.status, stub.body = 504, {"error": "upstream_timeout", "detail": "slow"}
    image = a_selfie((320, 240))
    async with app_factory(function_url=FUNCTION_URL, **ONE_TRY) as app, client_for(app) as client:
        _, key = await create_user(client)
        assert_problem(
            await upload(client, key, image, idempotency_key="t"), 504, "upstream_timeout"
        )
        back_up(stub)
        retried = await upload(client, key, image, idempotency_key="t")
        assert retried.status_code == 201, retried.text
    assert len(stub.received) == 2
