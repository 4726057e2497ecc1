"""POST /v1/generations, respx standing in for the function: sync, async, idempotency, limits."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
import respx
from api_testing import auth, client_for, create_user
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    upload,
    wait_finished,
)
from PIL import Image
from sqlalchemy import func, select

from api.generations.models import Generation, GenerationInput

pytestmark = pytest.mark.usefixtures("function_mock")


@pytest.fixture
def function_mock() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def stub(function_mock: respx.MockRouter) -> FunctionStub:
    stub = FunctionStub()
    function_mock.post(FUNCTION_URL).mock(side_effect=stub)
    return stub


async def count(session: Any, model: Any) -> int:
    return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_sync_upload_is_stripped_forwarded_and_recorded(app_factory, db, stub) -> None:
    selfie = a_selfie((4000, 3000), gps=True)
    async with (
        app_factory(function_url=FUNCTION_URL, forward_max_side_px=1600) as app,
        client_for(app) as client,
    ):
        user, key = await create_user(client)
        response = await upload(client, key, selfie, "Fox")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "succeeded"
        assert body["animal"] == "fox"
        assert body["error"] is None
        assert body["faces"][0]["confidence"] == 0.97
        assert body["completed_at"] is not None
        assert body["image_url"].startswith(
            f"http://testserver/media/avatars/{user['id']}/{body['id']}.png?expires="
        )
        history = (await client.get("/v1/generations", headers=auth(key))).json()
    assert [item["id"] for item in history["items"]] == [body["id"]]
    (sent,) = stub.received
    assert sent["generation_id"][0].decode() == body["id"]
    assert sent["user_id"][0].decode() == user["id"]
    assert sent["animal"][0] == b"fox"
    image_bytes, content_type = sent["image"]
    assert content_type == "image/jpeg"
    forwarded = Image.open(io.BytesIO(image_bytes))
    # Not decoded nor resized by the API (the function downscales): the same pixels, no EXIF.
    assert forwarded.size == (4000, 3000)
    assert dict(forwarded.getexif()) == {}
    assert forwarded.tobytes() == Image.open(io.BytesIO(selfie)).tobytes()
    assert len(image_bytes) < len(selfie)
    record = await db.get(Generation, uuid.UUID(body["id"]))
    assert record.timings_ms == {"decode": 1.5, "detect": 2.0, "total": 12.25}
    assert record.attempts == 1
    assert await count(db, GenerationInput) == 0


async def test_a_failed_sync_generation_answers_its_problem_and_stays_in_history(
    app_factory, db, stub
) -> None:
    stub.status, stub.body = 422, {"error": "no_face_detected", "detail": "no face in the photo"}
    async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, a_selfie((300, 200)))
        body = assert_problem(response, 422, "no_face_detected")
        assert body["detail"] == "no face in the photo"
        (item,) = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
    assert item["status"] == "failed"
    assert item["error"] == {"code": "no_face_detected", "detail": "no face in the photo"}
    assert item["image_url"] is None
    assert await count(db, GenerationInput) == 0


async def test_async_upload_answers_202_at_once_and_finishes_in_the_background(
    app_factory, stub
) -> None:
    stub.gate = asyncio.Event()
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        response = await upload(client, key, a_selfie((300, 200)), prefer="respond-async")
        assert response.status_code == 202, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/generations/{body['id']}"
        assert response.headers["preference-applied"] == "respond-async"
        assert body["status"] == "pending"  # SPEC: 202 carries the pending record
        assert body["image_url"] is None
        async with app.state.sessionmaker() as session:
            assert await count(session, GenerationInput) == 1  # durable until finished
        await stub.arrived.wait()  # the work claimed the record
        claimed = await client.get(response.headers["location"], headers=auth(key))
        assert claimed.json()["status"] == "processing"
        stub.gate.set()
        done = await wait_finished(client, key, response.headers["location"])
        assert done["status"] == "succeeded"
        assert done["image_url"]
        async with app.state.sessionmaker() as session:
            assert await count(session, GenerationInput) == 0
            record = await session.get(Generation, uuid.UUID(body["id"]))
            assert record.attempts == 1


async def test_same_idempotency_key_and_body_gives_the_same_record_once(app_factory, stub) -> None:
    image = a_selfie((320, 240))
    async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
        _, key = await create_user(client)
        first = await upload(client, key, image, idempotency_key="k-1")
        again = await upload(client, key, image, idempotency_key="k-1")
        assert (first.status_code, again.status_code) == (201, 201)
        assert first.json()["id"] == again.json()["id"]
        assert len(stub.received) == 1
        other = await upload(client, key, image, "dog", idempotency_key="k-1")
        assert_problem(other, 409, "conflict")
        changed = await upload(client, key, a_selfie((321, 240)), idempotency_key="k-1")
        assert_problem(changed, 409, "conflict")
        fresh = await upload(client, key, image, idempotency_key="k-2")
        assert fresh.json()["id"] != first.json()["id"]
    assert len(stub.received) == 2


async def test_a_retry_while_still_pending_gets_the_pending_record_without_a_new_call(
    app_factory, stub
) -> None:
    stub.gate = asyncio.Event()
    image = a_selfie((320, 240))
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        first = await upload(client, key, image, prefer="respond-async", idempotency_key="x")
        again = await upload(client, key, image, prefer="respond-async", idempotency_key="x")
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json()["id"] == first.json()["id"]
        # A synchronous retry waits for the same work instead of starting another.
        waiting = asyncio.create_task(upload(client, key, image, idempotency_key="x"))
        await asyncio.sleep(0.05)
        stub.gate.set()
        finished = await waiting
        assert finished.status_code == 201
        assert finished.json()["id"] == first.json()["id"]
    assert len(stub.received) == 1


async def test_concurrent_duplicates_are_resolved_to_one_record(app_factory, stub) -> None:
    image = a_selfie((320, 240))
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        responses = await asyncio.gather(
            *(upload(client, key, image, idempotency_key="same") for _ in range(5))
        )
        async with app.state.sessionmaker() as session:
            records = await count(session, Generation)
    ids = {r.json()["id"] for r in responses}
    assert [r.status_code for r in responses if r.status_code not in (201, 202)] == []
    assert len(ids) == 1
    assert records == 1
    assert len(stub.received) == 1


async def test_the_rate_limit_answers_429_with_retry_after(app_factory, stub) -> None:
    async with (
        app_factory(
            function_url=FUNCTION_URL, rate_limit_generations=2, rate_limit_window_s=600
        ) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        _, other_key = await create_user(client)
        for _ in range(2):
            assert (await upload(client, key, a_selfie((100, 80)))).status_code == 201
        limited = await upload(client, key, a_selfie((100, 80)))
        assert_problem(limited, 429, "rate_limited")
        assert 590 <= int(limited.headers["retry-after"]) <= 600
        assert (await upload(client, other_key, a_selfie((100, 80)))).status_code == 201
    assert len(stub.received) == 3


async def test_concurrent_uploads_cannot_all_pass_the_rate_limit(app_factory, stub) -> None:
    # Every request passes the early count before any has inserted: the count is taken again
    # with the insert, under the user's lock.
    async with (
        app_factory(
            function_url=FUNCTION_URL,
            rate_limit_generations=3,
            rate_limit_window_s=600,
            isolated=False,
        ) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        image = a_selfie((100, 80))
        answers = await asyncio.gather(
            *(upload(client, key, image, prefer="respond-async") for _ in range(8))
        )
        assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 5
        async with app.state.sessionmaker() as session:
            assert await count(session, Generation) == 3
        for answer in answers:
            if answer.status_code == 202:
                await wait_finished(client, key, answer.headers["location"])


@pytest.mark.parametrize(
    ("image", "animal", "status", "code"),
    [
        (b"just some text, not an image", "cat", 415, "unsupported_image"),
        (b"", "cat", 422, "invalid_image"),
        (a_selfie((100, 80))[:300], "cat", 422, "invalid_image"),
        (a_selfie((100, 80)), "unicorn", 422, "invalid_request"),
    ],
)
async def test_bad_uploads_get_their_code_and_leave_nothing_behind(
    app_factory, db, stub, image, animal, status, code
) -> None:
    async with app_factory(function_url=FUNCTION_URL) as app, client_for(app) as client:
        _, key = await create_user(client)
        assert_problem(await upload(client, key, image, animal), status, code)
    assert stub.received == []
    assert await count(db, Generation) == 0


async def test_an_upload_over_the_limit_is_413_and_no_key_is_401(app_factory, stub) -> None:
    async with (
        app_factory(function_url=FUNCTION_URL, max_upload_bytes=10_000) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        assert_problem(await upload(client, key, a_selfie((2000, 1500))), 413, "image_too_large")
        response = await client.post(
            "/v1/generations", files={"image": ("a.jpg", b"x")}, data={"animal": "cat"}
        )
        assert_problem(response, 401, "unauthorized")
    assert stub.received == []


async def test_the_upload_form_is_documented_in_openapi(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/generations"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["required"]) == {"image", "animal"}
    assert {"201", "202"} <= operation["responses"].keys()


def private_photo(fmt: str) -> bytes:
    """A photo in `fmt` whose EXIF holds GPS, a description and the orientation 6."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "SecretPlace"  # ImageDescription
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    out = io.BytesIO()
    image = Image.new("RGB", (120, 80), (180, 140, 120))
    image.save(out, fmt, exif=exif.tobytes() if fmt == "HEIF" else exif)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
async def test_no_exif_but_the_orientation_leaves_the_api(app_factory, stub, fmt) -> None:
    """Checked on the bytes that leave the API: forwarded, and kept for async work."""
    photo = private_photo(fmt)
    assert b"SecretPlace" in photo
    stub.gate = asyncio.Event()
    async with (
        app_factory(function_url=FUNCTION_URL, isolated=False) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        response = await upload(client, key, photo, prefer="respond-async")
        assert response.status_code == 202, response.text
        await stub.arrived.wait()
        async with app.state.sessionmaker() as session:
            (kept,) = (await session.execute(select(GenerationInput))).scalars().all()
        stub.gate.set()
        await wait_finished(client, key, response.headers["location"])
    (sent,) = stub.received
    forwarded, _ = sent["image"]
    assert kept.image == forwarded
    for data in (forwarded, kept.image):
        assert b"SecretPlace" not in data
        exif = dict(Image.open(io.BytesIO(data)).getexif())
        # HEIC is decoded and turned upright by the API; the others keep the tag for the function.
        assert exif == ({} if fmt == "HEIF" else {0x0112: 6})
        assert 0x8825 not in exif
