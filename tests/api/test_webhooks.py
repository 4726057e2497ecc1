"""Completion webhooks, end to end in development mode: the API, a function stub, and a real
receiver on 127.0.0.1; every request the receiver gets is checked with the standardwebhooks
package, as an app's backend would."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from api_testing import WEBHOOK_KEY, assert_problem, auth, client_for, create_user
from cloud_tasks_fake import QUEUE, TASKS_ACCOUNT, FakeGoogle
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    function_stubbed,
    upload,
    upload_pack,
)
from sqlalchemy import func, select
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError
from webhook_receiver import HANG, receiving

from api.webhooks.models import Webhook, WebhookDelivery
from api.webhooks.secrets import SecretBox, SecretUnreadable
from api.webhooks.service import reseal_secrets

SELFIE = a_selfie((300, 200))
DEV = {
    "isolated": False,
    "environment": "development",
    "function_url": FUNCTION_URL,
    "function_max_attempts": 1,
    "webhook_retry_schedule_s": (0.05, 0.05),
    "webhook_retry_jitter": 0.0,
}


@pytest.fixture
def stub() -> Any:
    with function_stubbed(FunctionStub(), loopback=True) as stub:  # loopback: the receiver
        yield stub


@pytest.fixture
def hooked_app(app_factory: Any, stub: FunctionStub) -> Any:
    """`async with hooked_app(**overrides) as app`: a committing app in development mode."""

    def start(**overrides: Any) -> Any:
        return app_factory(**(DEV | overrides))

    return start


async def set_webhook(client: httpx.AsyncClient, key: str, url: str) -> str:
    """Set the user's webhook; its secret."""
    response = await client.put("/v1/users/me/webhook", json={"url": url}, headers=auth(key))
    assert response.status_code == 200, response.text
    secret = response.json()["secret"]
    assert isinstance(secret, str)
    return secret


async def log_of(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/users/me/webhook/deliveries", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled(
    client: httpx.AsyncClient, key: str, count: int = 1, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """The delivery log once it holds `count` deliveries and none is pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        items: list[dict[str, Any]] = (await log_of(client, key))["items"]
        if len(items) >= count and all(item["status"] != "pending" for item in items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {items}")
        await asyncio.sleep(0.02)


def verified(secret: str, received: Any) -> dict[str, Any]:
    """The payload, if the signature holds (as a receiver checks it)."""
    payload: dict[str, Any] = Verifier(secret).verify(received.body, received.headers)
    return payload


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- what is sent ----------------------------------------------------------------------------


async def test_an_async_generation_delivers_one_signed_request(hooked_app) -> None:
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            accepted = await upload(client, key, SELFIE, prefer="respond-async")
            assert accepted.status_code == 202, accepted.text
            generation_id = accepted.json()["id"]
            [log] = await settled(client, key)
            record = (
                await client.get(f"/v1/generations/{generation_id}", headers=auth(key))
            ).json()
        [request] = receiver.received

    payload = verified(secret, request)
    assert payload == {
        "type": "generation.succeeded",
        "timestamp": payload["timestamp"],
        "data": {
            "id": generation_id,
            "status": "succeeded",
            "animal": "fox",
            "pack_id": None,
            "error": None,
        },
    }
    assert when(payload["timestamp"]) == when(record["completed_at"])
    assert request.path == "/hooks/avatars"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == log["id"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    # Thin: nothing a receiver should not be handed (it reads the record with its key).
    assert "image_url" not in request.body.decode()
    assert log["event"] == "generation.succeeded"
    assert log["generation_id"] == generation_id
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("delivered", 1, 204)
    assert [a["status_code"] for a in log["attempt_log"]] == [204]

    # A body changed on the way, or signed with another secret, does not verify.
    tampered = request.body.replace(b"succeeded", b"failed")
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(tampered, request.headers)
    other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
    with pytest.raises(WebhookVerificationError):
        Verifier(other).verify(request.body, request.headers)


async def test_a_pack_delivers_one_signed_request_when_its_last_animal_ends(
    hooked_app, stub
) -> None:
    stub.animal_errors = {"cat": "content_blocked"}
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            accepted = await upload_pack(
                client, key, SELFIE, "fox,cat,panda", prefer="respond-async"
            )
            assert accepted.status_code == 202, accepted.text
            pack_id = accepted.json()["id"]
            [log] = await settled(client, key)
            await asyncio.sleep(0.1)  # nothing else arrives
        [request] = receiver.received

    assert verified(secret, request)["data"] == {
        "id": pack_id,
        "status": "partial",
        "animals": ["fox", "cat", "panda"],
        "pack_id": pack_id,
        "error": None,
    }
    assert verified(secret, request)["type"] == "pack.completed"
    assert (log["event"], log["pack_id"], log["generation_id"]) == ("pack.completed", pack_id, None)


async def test_a_sync_generation_that_fails_sends_generation_failed(hooked_app, stub) -> None:
    stub.status, stub.body = 422, {"error": "no_face_detected", "detail": "no face in the photo"}
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            response = await upload(client, key, SELFIE)
            assert_problem(response, 422, "no_face_detected")
            await settled(client, key)
        [request] = receiver.received
    payload = verified(secret, request)
    assert payload["type"] == "generation.failed"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["error"] == {
        "code": "no_face_detected",
        "detail": "no face in the photo",
    }


async def test_nothing_is_written_or_sent_without_a_webhook(hooked_app) -> None:
    handed: list[uuid.UUID] = []

    async def record(delivery_ids: Any) -> None:
        handed.extend(delivery_ids)

    async with hooked_app() as app, client_for(app) as client:
        app.state.runner.on_events = record
        _, key = await create_user(client)
        assert (await upload(client, key, SELFIE)).status_code == 201
        assert (await upload(client, key, SELFIE, prefer="respond-async")).status_code == 202
        await asyncio.sleep(0.1)
        assert (await log_of(client, key))["items"] == []
    assert handed == []  # no event handed to the queue either


# --- retries, removal, timeouts ----------------------------------------------------------------


async def test_500_twice_then_200_is_delivered_on_the_third_attempt(hooked_app) -> None:
    with receiving(500, 500, 200) as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            [log] = await settled(client, key)
        requests = receiver.received

    assert (log["status"], log["attempts"], log["last_status_code"]) == ("delivered", 3, 200)
    assert [a["status_code"] for a in log["attempt_log"]] == [500, 500, 200]
    assert [a["error"] for a in log["attempt_log"]] == [
        "the receiver answered 500",
        "the receiver answered 500",
        None,
    ]
    assert [a["number"] for a in log["attempt_log"]] == [1, 2, 3]
    # One event: the same id and body at every attempt, each freshly signed.
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    for request in requests:
        verified(secret, request)


async def test_retries_follow_the_schedule_and_then_the_delivery_fails(hooked_app) -> None:
    with receiving(default=503) as receiver:
        async with (
            hooked_app(webhook_retry_schedule_s=(0.2, 0.4)) as app,
            client_for(app) as client,
        ):
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            [log] = await settled(client, key)
        arrivals = [r.at for r in receiver.received]
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("failed", 3, 503)
    assert log["next_attempt_at"] is None
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Never early (jitter is off); late only by a loaded machine's scheduling.
    assert 0.2 <= gaps[0] < 1.0, gaps
    assert 0.4 <= gaps[1] < 1.2, gaps


async def test_410_removes_the_webhook(hooked_app) -> None:
    with receiving(410) as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            [log] = await settled(client, key)
            assert (await client.get("/v1/users/me/webhook", headers=auth(key))).status_code == 404
            # Later generations send nothing.
            assert (await upload(client, key, SELFIE)).status_code == 201
            await asyncio.sleep(0.1)
            assert len((await log_of(client, key))["items"]) == 1
        assert len(receiver.received) == 1
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("failed", 1, 410)
    assert "410" in log["last_error"]


async def test_a_receiver_that_never_answers_is_timed_out_and_retried(hooked_app) -> None:
    with receiving(HANG, HANG, default=HANG) as receiver:
        overrides = {"webhook_timeout_s": 0.3, "webhook_retry_schedule_s": (0.05,)}
        async with hooked_app(**overrides) as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            [log] = await settled(client, key)
        assert len(receiver.received) == 2
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("failed", 2, None)
    for attempt in log["attempt_log"]:
        assert attempt["error"] == "no answer within 0.3 s"
        assert 250 <= attempt["duration_ms"] < 2000


async def test_a_refused_connection_is_a_failed_attempt(hooked_app) -> None:
    async with hooked_app(webhook_retry_schedule_s=()) as app, client_for(app) as client:
        _, key = await create_user(client)
        await set_webhook(client, key, "http://127.0.0.1:9/hooks")  # nothing listens there
        await upload(client, key, SELFIE, prefer="respond-async")
        [log] = await settled(client, key)
    assert (log["status"], log["attempts"]) == ("failed", 1)
    assert log["last_error"].startswith("could not connect")


# --- restarts ---------------------------------------------------------------------------------


async def test_a_restart_between_attempts_loses_no_delivery(hooked_app) -> None:
    overrides = {"webhook_retry_schedule_s": (0.3,), "webhook_sweep_s": 0.05}
    with receiving(500) as receiver:
        async with hooked_app(keep_tables=True, **overrides) as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            await asyncio.to_thread(receiver.wait_for, 1)
            await asyncio.sleep(0.05)  # the first attempt is recorded
        # Stopped before the retry was due; the next process makes it.
        assert len(receiver.received) == 1
        async with hooked_app(**overrides) as app, client_for(app) as client:
            [log] = await settled(client, key)
        assert len(receiver.received) == 2
    assert (log["status"], log["attempts"]) == ("delivered", 2)
    assert [a["status_code"] for a in log["attempt_log"]] == [500, 204]
    verified(secret, receiver.received[1])


async def test_a_restart_during_an_attempt_loses_no_delivery(hooked_app) -> None:
    overrides = {"webhook_timeout_s": 5.0, "shutdown_grace_s": 0.2}
    with receiving(HANG) as receiver:
        async with hooked_app(keep_tables=True, **overrides) as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE, prefer="respond-async")
            await asyncio.to_thread(receiver.wait_for, 1)
        # Stopped mid-attempt: recorded as interrupted, due at once at the next start.
        async with hooked_app(**overrides) as app, client_for(app) as client:
            [log] = await settled(client, key)
        assert len(receiver.received) == 2
    assert (log["status"], log["attempts"]) == ("delivered", 2)
    first, second = log["attempt_log"]
    assert first["error"] == "the service stopped during the attempt"
    assert second["status_code"] == 204


async def test_an_event_committed_but_never_handed_to_the_queue_is_sent_after_a_restart(
    hooked_app,
) -> None:
    with receiving() as receiver:
        async with hooked_app(keep_tables=True) as app, client_for(app) as client:
            app.state.runner.on_events = None  # as if the process died right after the commit
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE)
            [log] = (await log_of(client, key))["items"]
            assert log["status"] == "pending"
            await asyncio.sleep(0.1)
            assert receiver.received == []
        async with hooked_app() as app, client_for(app) as client:
            [log] = await settled(client, key)
        [request] = receiver.received
    assert log["status"] == "delivered"
    assert verified(secret, request)["type"] == "generation.succeeded"


# --- the webhook itself -------------------------------------------------------------------------


async def test_set_read_change_and_remove(hooked_app) -> None:
    async with hooked_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        headers = auth(key)
        assert (await client.get("/v1/users/me/webhook", headers=headers)).status_code == 404
        created = await client.put(
            "/v1/users/me/webhook", json={"url": "http://127.0.0.1:1/a"}, headers=headers
        )
        assert created.status_code == 200, created.text
        secret = created.json()["secret"]
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24

        read = (await client.get("/v1/users/me/webhook", headers=headers)).json()
        assert read["url"] == "http://127.0.0.1:1/a"
        assert read["secret"] is None  # shown only on create and rotate
        changed = await client.put(
            "/v1/users/me/webhook", json={"url": "http://127.0.0.1:1/b"}, headers=headers
        )
        assert (changed.json()["url"], changed.json()["secret"]) == ("http://127.0.0.1:1/b", None)

        assert (await client.delete("/v1/users/me/webhook", headers=headers)).status_code == 204
        assert (await client.get("/v1/users/me/webhook", headers=headers)).status_code == 404
        missing = await client.delete("/v1/users/me/webhook", headers=headers)
        assert_problem(missing, 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rotate": False},
        {"url": "ftp://127.0.0.1/x"},
        {"url": "not a url"},
        {"url": ""},
        {"url": "http://127.0.0.1/" + "a" * 2100},
        {"url": "http://user:pass@127.0.0.1/x"},
        {"url": "http://127.0.0.1/x", "extra": 1},
        {"url": 12},
        [],
    ],
)
async def test_bad_bodies_are_422(hooked_app, body) -> None:
    async with hooked_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.put("/v1/users/me/webhook", json=body, headers=auth(key))
        assert_problem(response, 422, "invalid_request")
        assert (await client.get("/v1/users/me/webhook", headers=auth(key))).status_code == 404


async def test_rotating_with_no_webhook_is_404_and_every_route_needs_a_key(hooked_app) -> None:
    async with hooked_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        rotate = await client.put("/v1/users/me/webhook", json={"rotate": True}, headers=auth(key))
        assert_problem(rotate, 404, "not_found")
        for method, path in [
            ("PUT", "/v1/users/me/webhook"),
            ("GET", "/v1/users/me/webhook"),
            ("DELETE", "/v1/users/me/webhook"),
            ("GET", "/v1/users/me/webhook/deliveries"),
        ]:
            response = await client.request(method, path, json={"url": "http://127.0.0.1/"})
            assert_problem(response, 401, "unauthorized")


async def test_during_a_rotation_both_secrets_sign(hooked_app) -> None:
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            old = await set_webhook(client, key, receiver.url)
            rotated = await client.put(
                "/v1/users/me/webhook", json={"rotate": True}, headers=auth(key)
            )
            assert rotated.status_code == 200, rotated.text
            new = rotated.json()["secret"]
            assert new != old
            assert rotated.json()["url"] == receiver.url
            expires = when(rotated.json()["previous_secret_expires_at"])
            assert (expires - when(rotated.json()["updated_at"])).total_seconds() > 23.9 * 3600
            await upload(client, key, SELFIE)
            await settled(client, key)
        [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verified(new, request)
    verified(old, request)  # receivers that have not switched yet still verify


async def test_after_the_rotation_window_only_the_new_secret_signs(hooked_app) -> None:
    with receiving() as receiver:
        async with hooked_app(webhook_rotation_window_s=0) as app, client_for(app) as client:
            _, key = await create_user(client)
            old = await set_webhook(client, key, receiver.url)
            rotated = await client.put(
                "/v1/users/me/webhook", json={"rotate": True}, headers=auth(key)
            )
            new = rotated.json()["secret"]
            assert rotated.json()["previous_secret_expires_at"] is None
            await upload(client, key, SELFIE)
            await settled(client, key)
        [request] = receiver.received
    verified(new, request)
    with pytest.raises(WebhookVerificationError):
        verified(old, request)


async def test_the_secret_is_stored_encrypted_and_bound_to_its_owner(hooked_app) -> None:
    async with hooked_app() as app, client_for(app) as client:
        user, key = await create_user(client)
        secret = await set_webhook(client, key, "http://127.0.0.1:1/x")
        async with app.state.sessionmaker() as session:
            stored = (await session.execute(select(Webhook.secret))).scalar_one()
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    assert secret.encode() not in stored
    assert raw not in stored
    assert secret.removeprefix("whsec_").encode() not in stored
    owner = uuid.UUID(user["id"])
    assert SecretBox(WEBHOOK_KEY).open(stored, owner) == secret
    with pytest.raises(SecretUnreadable):
        SecretBox("another-key-" + "k" * 32).open(stored, owner)
    with pytest.raises(SecretUnreadable):
        SecretBox(WEBHOOK_KEY).open(stored, uuid.uuid4())  # copied onto another user's row
    # Rotating the encryption key: the new one first, the old one still opens what it sealed.
    rotating = SecretBox(f"a-new-key-{'n' * 32},{WEBHOOK_KEY}")
    assert rotating.open(stored, owner) == secret
    assert SecretBox(f"a-new-key-{'n' * 32}").open(rotating.seal(secret, owner), owner) == secret


async def test_erasing_the_user_removes_the_webhook_and_its_deliveries(hooked_app) -> None:
    with receiving(500, default=500) as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE)
            await settled(client, key)
            assert (await client.delete("/v1/users/me", headers=auth(key))).status_code == 204
            async with app.state.sessionmaker() as session:
                for model in (Webhook, WebhookDelivery):
                    count = await session.scalar(select(func.count()).select_from(model))
                    assert count == 0, model.__tablename__


async def test_removing_the_webhook_fails_its_pending_deliveries(hooked_app) -> None:
    with receiving(default=500) as receiver:
        overrides = {"webhook_retry_schedule_s": (30.0,)}
        async with hooked_app(**overrides) as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            await upload(client, key, SELFIE)
            deadline = time.monotonic() + 5
            while (await log_of(client, key))["items"][0]["attempts"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert (
                await client.delete("/v1/users/me/webhook", headers=auth(key))
            ).status_code == 204
            [log] = (await log_of(client, key))["items"]
    assert (log["status"], log["last_error"], log["next_attempt_at"]) == (
        "failed",
        "the webhook was removed",
        None,
    )


async def test_the_delivery_log_pages_newest_first(hooked_app) -> None:
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            await set_webhook(client, key, receiver.url)
            for _ in range(3):
                await upload(client, key, SELFIE)
            await settled(client, key, count=3)
            first = await log_of(client, key, limit=2)
            second = await log_of(client, key, limit=2, cursor=first["next_cursor"])
            everything = (await log_of(client, key))["items"]
    assert [item["id"] for item in first["items"] + second["items"]] == [
        item["id"] for item in everything
    ]
    assert second["next_cursor"] is None
    created = [item["created_at"] for item in everything]
    assert created == sorted(created, reverse=True)


async def test_no_url_or_secret_reaches_the_logs(hooked_app, caplog) -> None:
    caplog.set_level(logging.INFO)  # httpx logs each request at INFO
    caplog.set_level(logging.DEBUG, logger="api")
    with receiving(500, 404, default=200) as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            rotated = await client.put(
                "/v1/users/me/webhook", json={"rotate": True}, headers=auth(key)
            )
            await upload(client, key, SELFIE, prefer="respond-async")
            await settled(client, key)
            signatures = [r.headers["webhook-signature"] for r in receiver.received]
    port = receiver.url.split(":")[2].split("/")[0]
    text = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    assert "webhook delivery" in text  # the deliveries were logged...
    for needle in [
        receiver.url,
        "/hooks/avatars",
        f"127.0.0.1:{port}",
        secret,
        secret.removeprefix("whsec_"),
        rotated.json()["secret"],
        *(s.split(",", 1)[1].split(" ")[0] for s in signatures),
    ]:
        assert needle not in text  # ...without where to, or how they were signed


# --- Cloud Tasks --------------------------------------------------------------------------------


async def test_with_cloud_tasks_each_attempt_is_a_task_at_its_time(
    app_factory, stub, monkeypatch
) -> None:
    google = FakeGoogle().start()
    try:
        settings = DEV | {
            "work_queue": "cloud_tasks",
            "cloud_tasks_queue": QUEUE,
            "cloud_tasks_endpoint": google.url,
            "work_service_account": TASKS_ACCOUNT,
            "oidc_certs_url": google.certs_url,
            "webhook_retry_schedule_s": (30.0,),
        }
        with receiving(500) as receiver:
            async with app_factory(**settings) as app, client_for(app) as client:
                _, key = await create_user(client)
                secret = await set_webhook(client, key, receiver.url)
                assert (await upload(client, key, SELFIE)).status_code == 201
                [log] = (await log_of(client, key))["items"]
                delivery_id = log["id"]
                # The event became a task named after the delivery; nothing was sent yet.
                first = google.tasks[f"{QUEUE}/tasks/{delivery_id}-webhook-0"]
                assert first["httpRequest"]["url"].endswith(f"/internal/work/webhook/{delivery_id}")
                assert "scheduleTime" not in first
                assert receiver.received == []

                answer = await google.deliver(client, first)
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"kind": "webhook", "id": delivery_id, "status": "pending"}
                # The retry is the next task, due at the delivery's own time (about 30 s on).
                [log] = (await log_of(client, key))["items"]
                retry_name = [n for n in google.tasks if n.endswith("-webhook-1-" + n[-13:])]
                assert len(retry_name) == 1, list(google.tasks)
                retry = google.tasks[retry_name[0]]
                due = when(retry["scheduleTime"])
                assert due == when(log["next_attempt_at"])
                assert 20 < (due - when(log["attempt_log"][0]["started_at"])).total_seconds() < 40

                # Delivered early by the queue (or again): not due, so not attempted.
                again = await google.deliver(client, first, retry_count=1)
                assert again.json()["status"] == "pending"
                assert len(receiver.received) == 1

                # At its time (the test moves the clock by making it due now).
                async with app.state.sessionmaker() as session, session.begin():
                    delivery = await session.get(WebhookDelivery, uuid.UUID(delivery_id))
                    assert delivery is not None
                    delivery.next_attempt_at = delivery.created_at
                answer = await google.deliver(client, retry)
                assert answer.json()["status"] == "delivered"
                [log] = (await log_of(client, key))["items"]
        assert [a["status_code"] for a in log["attempt_log"]] == [500, 204]
        verified(secret, receiver.received[1])
    finally:
        google.stop()


async def test_rotating_the_encryption_key_re_encrypts_every_secret_at_start(hooked_app) -> None:
    new_key = "the-next-webhook-encryption-key-" + "n" * 16
    with receiving() as receiver:
        async with hooked_app(keep_tables=True) as app, client_for(app) as client:
            user, key = await create_user(client)
            old = await set_webhook(client, key, receiver.url)
            rotated = await client.put(
                "/v1/users/me/webhook", json={"rotate": True}, headers=auth(key)
            )
            new = rotated.json()["secret"]
        owner = uuid.UUID(user["id"])
        # The new key first, the old one after it: started once, the API re-encrypts.
        async with (
            hooked_app(keep_tables=True, webhook_encryption_key=f"{new_key},{WEBHOOK_KEY}") as app,
            app.state.sessionmaker() as session,
        ):
            hook = await session.get(Webhook, owner)
            assert hook is not None
            assert hook.previous_secret is not None
            only_new = SecretBox(new_key)
            assert only_new.open(hook.secret, owner) == new
            assert only_new.open(hook.previous_secret, owner) == old
            # Done once: nothing is left under the old key for the next start.
            assert await reseal_secrets(app.state.sessionmaker, app.state.secret_box) == 0
        # The old key can go: deliveries still sign, with both secrets during the rotation.
        async with hooked_app(webhook_encryption_key=new_key) as app, client_for(app) as client:
            await upload(client, key, SELFIE)
            [log] = await settled(client, key)
        [request] = receiver.received
    assert log["status"] == "delivered"
    verified(new, request)
    verified(old, request)


async def test_a_pack_retried_with_its_key_sends_one_event_per_run(hooked_app, stub) -> None:
    stub.animal_errors = {"cat": "upstream_unavailable"}
    with receiving() as receiver:
        async with hooked_app() as app, client_for(app) as client:
            _, key = await create_user(client)
            secret = await set_webhook(client, key, receiver.url)
            send = {"prefer": "respond-async", "idempotency_key": "pack-1"}
            assert (await upload_pack(client, key, SELFIE, "fox,cat", **send)).status_code == 202
            await settled(client, key, count=1)
            stub.animal_errors = {}  # the retry runs the animal that failed retryably
            assert (await upload_pack(client, key, SELFIE, "fox,cat", **send)).status_code == 202
            second, first = await settled(client, key, count=2)
        requests = receiver.received
    assert [verified(secret, r)["data"]["status"] for r in requests] == ["partial", "succeeded"]
    assert first["id"] != second["id"]  # a new run is a new event, with its own webhook-id
    assert [r.headers["webhook-id"] for r in requests] == [first["id"], second["id"]]
