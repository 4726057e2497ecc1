"""The work queue on Cloud Tasks: the real google-cloud-tasks client against a fake on loopback,
and the test playing Cloud Tasks (the recorded task posted back with a signed OIDC token).

respx stands in for the function; the fake (tests/api/cloud_tasks_fake.py) for Cloud Tasks and
for Google's token certificates.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_testing import BASE_URL, auth, client_for, create_user
from cloud_tasks_fake import QUEUE, TASKS_ACCOUNT, FakeGoogle, SigningKey
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    upload,
    upload_pack,
)
from sqlalchemy import func, select, update

from api.db import utcnow
from api.generations.models import Generation, GenerationInput, PackInput
from api.work import oidc

SELFIE = a_selfie((300, 200))


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def stub() -> Iterator[FunctionStub]:
    with function_stubbed(FunctionStub(), loopback=True) as stub:  # loopback: the certificates
        yield stub


@pytest.fixture
def queued_app(app_factory: Any, google: FakeGoogle, stub: FunctionStub) -> Any:
    """`async with queued_app(**overrides) as app`: an app whose queue is Cloud Tasks."""

    def start(**overrides: Any) -> Any:
        settings = {
            "function_url": FUNCTION_URL,
            "work_queue": "cloud_tasks",
            "cloud_tasks_queue": QUEUE,
            "cloud_tasks_endpoint": google.url,
            "work_service_account": TASKS_ACCOUNT,
            "oidc_certs_url": google.certs_url,
            "function_max_attempts": 1,
        }
        return app_factory(**({"isolated": False} | settings | overrides))

    return start


async def upload_async(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    return await upload(client, key, SELFIE, prefer="respond-async", **headers)


async def queued_upload(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new user's async upload: the user's key and the generation's id."""
    _, key = await create_user(client)
    return key, (await upload_async(client, key)).json()["id"]


def task_of(google: FakeGoogle, generation_id: str) -> dict[str, Any]:
    """The task the API created for a generation's first run."""
    return google.tasks[f"{QUEUE}/tasks/{generation_id}-generation-0"]


async def record(app: Any, generation_id: str) -> Generation:
    async with app.state.sessionmaker() as session:
        generation = await session.get(Generation, uuid.UUID(generation_id))
        assert generation is not None
        return generation


async def kept_inputs(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(GenerationInput)) or 0)


def job_url(generation_id: str) -> str:
    return f"{BASE_URL}/internal/work/generation/{generation_id}"


async def test_an_async_upload_becomes_one_named_task_that_runs_when_delivered(
    queued_app, google, stub
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_async(client, key)
        assert response.status_code == 202, response.text
        generation_id = response.json()["id"]
        assert response.json()["status"] == "pending"
        # Enqueued once committed, named after the job: nothing runs in the API process.
        [sent] = google.created
        task = sent["task"]
        assert task["name"] == f"{QUEUE}/tasks/{generation_id}-generation-0"
        assert task["httpRequest"]["url"] == job_url(generation_id)
        assert task["httpRequest"]["httpMethod"] == 1  # POST
        assert task["httpRequest"]["oidcToken"] == {
            "serviceAccountEmail": TASKS_ACCOUNT,
            "audience": job_url(generation_id),
        }
        assert task["dispatchDeadline"] == "600s"
        await asyncio.sleep(0.05)
        assert stub.received == []
        assert (await record(app, generation_id)).status == "pending"
        assert await kept_inputs(app) == 1  # the upload waits with the record

        answer = await google.deliver(client, google.tasks[task["name"]])
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"kind": "generation", "id": generation_id, "status": "succeeded"}
        done = await client.get(f"/v1/generations/{generation_id}", headers=auth(key))
        assert done.json()["status"] == "succeeded"
        assert done.json()["image_url"]
        assert len(stub.received) == 1
        assert await kept_inputs(app) == 0

        # Delivered again (Cloud Tasks is at-least-once): answered 200, the function not called.
        again = await google.deliver(client, google.tasks[task["name"]], retry_count=1)
        assert (again.status_code, again.json()["status"]) == (200, "succeeded")
        assert len(stub.received) == 1


async def test_two_deliveries_at_once_run_the_function_once(queued_app, google, stub) -> None:
    stub.gate = asyncio.Event()
    async with queued_app() as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        first = asyncio.create_task(google.deliver(client, task))
        await stub.arrived.wait()
        second = asyncio.create_task(google.deliver(client, task))
        await asyncio.sleep(0.05)
        stub.gate.set()
        answers = await asyncio.gather(first, second)
        assert [a.status_code for a in answers] == [200, 200]
        assert len(stub.received) == 1
        assert (await record(app, generation_id)).status == "succeeded"


async def test_a_retried_request_is_not_enqueued_twice(queued_app, google) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        first = await upload_async(client, key, idempotency_key="k-1")
        second = await upload_async(client, key, idempotency_key="k-1")
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json()["id"] == second.json()["id"]
        assert len(google.created) == 1


async def test_already_exists_is_success(queued_app, google) -> None:
    """A create whose first answer was lost is retried: the 409 that follows means "queued"."""
    google.refuse_next(409)
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_async(client, key)
        assert response.status_code == 202, response.text
        assert (await record(app, response.json()["id"])).status == "pending"


async def test_overload_and_quota_answers_are_retried_within_the_enqueue(
    queued_app, google
) -> None:
    google.refuse_next(503, 429)
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_async(client, key)
        assert response.status_code == 202, response.text
        names = google.task_names()
        assert len(names) == 3
        assert len(set(names)) == 1  # one task name through every retry
        assert len(google.tasks) == 1


@pytest.mark.parametrize("refusal", [503, 429])
async def test_a_queue_that_cannot_take_the_job_answers_503_and_leaves_no_pending_record(
    queued_app, google, stub, refusal
) -> None:
    google.refuse_next(*[refusal] * 100)
    # Refused until the enqueue's time is up: a short one keeps the test quick.
    async with queued_app(work_enqueue_timeout_s=1.0) as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_async(client, key, idempotency_key="k-2")
        assert_problem(response, 503, "upstream_unavailable")
        assert int(response.headers["retry-after"]) > 0
        async with app.state.sessionmaker() as session:
            [generation] = (await session.scalars(select(Generation))).all()
        assert (generation.status, generation.error_code) == ("failed", "upstream_unavailable")
        assert await kept_inputs(app) == 0  # the selfie is not kept for work that will not run
        assert google.tasks == {}

        # The queue is back: the same request runs again, as a new task (the record's next run).
        google.refuse_next()
        retried = await upload_async(client, key, idempotency_key="k-2")
        assert retried.status_code == 202, retried.text
        assert retried.json()["id"] == str(generation.id)
        assert list(google.tasks) == [f"{QUEUE}/tasks/{generation.id}-generation-1"]
        delivered = await google.deliver(client, next(iter(google.tasks.values())))
        assert delivered.json()["status"] == "succeeded"


async def test_a_sync_upload_runs_in_the_request_and_enqueues_nothing(
    queued_app, google, stub
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, SELFIE)
        assert response.status_code == 201, response.text
        assert google.created == []


# --- the endpoint's answers: what Cloud Tasks does next ---------------------------------------


async def test_a_retryable_failure_answers_503_and_the_next_delivery_finishes_it(
    queued_app, google, stub
) -> None:
    stub.status, stub.body = 503, {"error": "upstream_unavailable", "detail": "Vertex AI quota"}
    async with queued_app() as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        answer = await google.deliver(client, task)
        assert_problem(answer, 503, "upstream_unavailable")
        generation = await record(app, generation_id)
        assert generation.status == "pending"  # back in the queue's hands, its upload kept
        assert await kept_inputs(app) == 1

        stub.status, stub.body = 200, None
        answer = await google.deliver(client, task, retry_count=1)
        assert (answer.status_code, answer.json()["status"]) == (200, "succeeded")
        assert len(stub.received) == 2


async def test_the_last_attempt_records_the_failure_and_answers_200(
    queued_app, google, stub
) -> None:
    stub.status, stub.body = 503, {"error": "upstream_unavailable", "detail": "Vertex AI quota"}
    async with queued_app(work_max_attempts=3) as app, client_for(app) as client:
        key, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        answer = await google.deliver(client, task, retry_count=2)  # the third and last
        assert (answer.status_code, answer.json()["status"]) == (200, "failed")
        generation = await record(app, generation_id)
        assert (generation.status, generation.error_code) == ("failed", "upstream_unavailable")
        assert await kept_inputs(app) == 0
        failed = await client.get(f"/v1/generations/{generation_id}", headers=auth(key))
        assert failed.json()["error"]["code"] == "upstream_unavailable"


async def test_a_delivery_past_the_attempts_gives_up_without_calling_the_function(
    queued_app, google, stub
) -> None:
    async with queued_app(work_max_attempts=3) as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        answer = await google.deliver(client, task, retry_count=3)
        assert (answer.status_code, answer.json()["status"]) == (200, "failed")
        assert stub.received == []
        assert (await record(app, generation_id)).error_code == "upstream_timeout"


async def test_a_final_failure_is_recorded_and_not_retried(queued_app, google, stub) -> None:
    stub.status, stub.body = 422, {"error": "no_face_detected", "detail": "no face in the image"}
    async with queued_app() as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        answer = await google.deliver(client, task)
        assert (answer.status_code, answer.json()["status"]) == (200, "failed")
        assert (await record(app, generation_id)).error_code == "no_face_detected"


async def test_a_live_attempt_elsewhere_is_not_claimed_until_it_goes_stale(
    queued_app, google, stub
) -> None:
    async with queued_app(generation_stale_after_s=60) as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        task = task_of(google, generation_id)
        statement = update(Generation).where(Generation.id == uuid.UUID(generation_id))
        async with app.state.sessionmaker() as session, session.begin():
            # Another instance claimed it a moment ago and is still working.
            await session.execute(statement.values(status="processing", attempts=1))
        busy = await google.deliver(client, task, retry_count=1)
        assert_problem(busy, 503, "upstream_unavailable")
        assert stub.received == []
        async with app.state.sessionmaker() as session, session.begin():
            # That instance died: its claim is older than the stale period.
            await session.execute(statement.values(updated_at=utcnow() - timedelta(seconds=61)))
        taken = await google.deliver(client, task, retry_count=2)
        assert (taken.status_code, taken.json()["status"]) == (200, "succeeded")
        assert (await record(app, generation_id)).attempts == 2


async def test_a_deleted_generation_is_done_with(queued_app, google, stub) -> None:
    async with queued_app() as app, client_for(app) as client:
        key, generation_id = await queued_upload(client)
        deleted = await client.delete(f"/v1/generations/{generation_id}", headers=auth(key))
        assert deleted.status_code == 204
        answer = await google.deliver(client, next(iter(google.tasks.values())))
        assert (answer.status_code, answer.json()["status"]) == (200, None)
        assert stub.received == []


# --- who may post a job --------------------------------------------------------------------


def forged(google: FakeGoogle, audience: str) -> str:
    """Signed by another key that claims the published key's id."""
    return google.token(audience, key=SigningKey(google.key.key_id))


REFUSED_TOKENS = {
    "no token": (None, 401),
    "not a JWT": (lambda g, aud: "not-a-token", 401),
    "forged": (forged, 401),
    "unknown key": (lambda g, aud: g.token(aud, key=SigningKey()), 401),
    "expired": (lambda g, aud: g.token(aud, expires_in_s=-120), 401),
    "wrong audience": (lambda g, aud: g.token("https://elsewhere.example/work"), 401),
    "another job's audience": (lambda g, aud: g.token(job_url(str(uuid.uuid4()))), 401),
    "wrong issuer": (lambda g, aud: g.token(aud, issuer="https://evil.example"), 401),
    "wrong account": (lambda g, aud: g.token(aud, "attacker@evil.iam.gserviceaccount.com"), 403),
    "unverified email": (lambda g, aud: g.token(aud, email_verified=False), 403),
}


@pytest.mark.parametrize("case", list(REFUSED_TOKENS))
async def test_a_caller_that_is_not_the_queue_is_refused_and_nothing_runs(
    queued_app, google, stub, case
) -> None:
    make_token, status = REFUSED_TOKENS[case]
    async with queued_app() as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        url = job_url(generation_id)
        headers = {"X-CloudTasks-TaskRetryCount": "0"}
        if make_token is not None:
            headers["Authorization"] = f"Bearer {make_token(google, url)}"
        answer = await client.post(url, headers=headers)
        assert_problem(answer, status, "unauthorized" if status == 401 else "forbidden")
        await asyncio.sleep(0.02)
        assert stub.received == []
        assert (await record(app, generation_id)).status == "pending"


async def test_a_user_api_key_is_not_a_work_token(queued_app, google, stub) -> None:
    async with queued_app() as app, client_for(app) as client:
        key, generation_id = await queued_upload(client)
        answer = await client.post(job_url(generation_id), headers=auth(key))
        assert_problem(answer, 401, "unauthorized")
        assert stub.received == []


async def test_a_configured_audience_replaces_the_jobs_url(queued_app, google, stub) -> None:
    audience = "animal-avatar-work"
    async with queued_app(work_audience=audience) as app, client_for(app) as client:
        _, key = await create_user(client)
        (await upload_async(client, key)).json()["id"]
        [task] = google.tasks.values()
        assert task["httpRequest"]["oidcToken"]["audience"] == audience
        assert (await google.deliver(client, task)).status_code == 200
        url = task["httpRequest"]["url"]
        with_url = await client.post(url, headers=auth(google.token(url)))
        assert_problem(with_url, 401, "unauthorized")


async def test_with_the_in_process_queue_the_endpoint_is_404(app_factory, google) -> None:
    async with app_factory() as app, client_for(app) as client:
        url = job_url(str(uuid.uuid4()))
        answer = await client.post(url, headers=auth(google.token(url)))
        assert_problem(answer, 404, "not_found")


async def test_the_certificates_are_fetched_once_and_again_for_a_new_key(
    queued_app, google, stub, monkeypatch
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        for _ in range(3):
            await upload_async(client, key)
        for task in list(google.tasks.values()):
            assert (await google.deliver(client, task)).status_code == 200
        assert google.cert_fetches == 1
        # Google rotates its keys: a token of a key the cache does not hold fetches them anew,
        # but at most once a minute (unknown key ids cannot make the API hammer Google).
        rotated = SigningKey()
        google.published = [google.key, rotated]
        generation_id = (await upload_async(client, key)).json()["id"]
        task = task_of(google, generation_id)
        token = google.token(job_url(generation_id), key=rotated)
        assert (await google.deliver(client, task, token=token)).status_code == 401
        assert google.cert_fetches == 1
        monkeypatch.setattr(oidc, "MIN_REFETCH_S", 0.0)  # a minute later
        assert (await google.deliver(client, task, token=token)).status_code == 200
        assert google.cert_fetches == 2


# --- the window between commit and enqueue --------------------------------------------------


async def test_stale_unfinished_records_are_offered_again_or_failed_at_start(
    queued_app, google, stub
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        stale_id = (await upload_async(client, key)).json()["id"]
        fresh_id = (await upload_async(client, key)).json()["id"]
        async with app.state.sessionmaker() as session, session.begin():
            await session.execute(
                update(Generation)
                .where(Generation.id == uuid.UUID(stale_id))
                .values(updated_at=utcnow() - timedelta(hours=1))
            )
        # And a sync upload whose process died mid-request: its upload died with it.
        sync_id = uuid.uuid4()
        async with app.state.sessionmaker() as session, session.begin():
            user_id = (await record(app, stale_id)).user_id
            old = utcnow() - timedelta(hours=1)
            session.add(
                Generation(
                    id=sync_id,
                    user_id=user_id,
                    animal="fox",
                    status="processing",
                    attempts=1,
                    created_at=old,
                    updated_at=old,
                )
            )
        google.tasks.clear()  # as if the process died between commit and enqueue
        created = len(google.created)
        async with queued_app():
            for _ in range(100):
                if len(google.created) > created:
                    break
                await asyncio.sleep(0.02)
            names = google.task_names()[created:]
            assert names == [f"{QUEUE}/tasks/{stale_id}-generation-0"]
            assert fresh_id not in str(names)
            orphan = await record(app, str(sync_id))
            assert (orphan.status, orphan.error_code) == ("failed", "upstream_timeout")
            assert (await record(app, fresh_id)).status == "pending"


async def pack_inputs(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(PackInput)) or 0)


async def test_an_async_pack_is_one_task_and_one_call_for_all_its_animals(
    queued_app, google, stub
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat", prefer="respond-async")
        assert response.status_code == 202, response.text
        pack_id = response.json()["id"]
        [sent] = google.created
        task = sent["task"]
        assert task["name"] == f"{QUEUE}/tasks/{pack_id}-pack-0"
        assert task["httpRequest"]["url"] == f"{BASE_URL}/internal/work/pack/{pack_id}"
        assert not stub.received  # nothing runs until the queue delivers it
        answer = await google.deliver(client, task)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"kind": "pack", "id": pack_id, "status": "succeeded"}
        assert len(stub.received) == 1
        assert stub.received[0]["animals"][0] == b"fox,cat"
        assert await pack_inputs(app) == 0
        # Delivered again (Cloud Tasks is at-least-once): done, nothing runs twice.
        again = await google.deliver(client, task, retry_count=1)
        assert (again.status_code, again.json()["status"]) == (200, "succeeded")
        assert len(stub.received) == 1


async def test_a_delivered_job_draws_the_style_its_records_were_asked_for(
    queued_app, google, stub
) -> None:
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        one = await upload(client, key, SELFIE, style="paint", prefer="respond-async")
        pack = await upload_pack(
            client, key, SELFIE, "fox,cat", style="paint", prefer="respond-async"
        )
        assert (one.status_code, pack.status_code) == (202, 202)
        assert not stub.received  # the style waits with the records, not with the task
        for sent in google.created:
            answer = await google.deliver(client, sent["task"])
            assert (answer.status_code, answer.json()["status"]) == (200, "succeeded")
        done = await client.get(f"/v1/generations/{one.json()['id']}", headers=auth(key))
        assert done.json()["style"] == "paint"
    assert [parts["style"][0] for parts in stub.received] == [b"paint", b"paint"]


async def test_one_animal_failing_retryably_is_delivered_again_alone(
    queued_app, google, stub
) -> None:
    stub.animal_errors = {"cat": "upstream_unavailable"}
    async with queued_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat", prefer="respond-async")
        pack_id = response.json()["id"]
        task = google.created[0]["task"]
        answer = await google.deliver(client, task)
        assert_problem(answer, 503, "upstream_unavailable")
        pack = (await client.get(f"/v1/packs/{pack_id}", headers=auth(key))).json()
        statuses = {g["animal"]: g["status"] for g in pack["generations"]}
        # The fox is done; the cat is back in the queue's hands, the pack's upload kept for it.
        assert statuses == {"fox": "succeeded", "cat": "pending"}
        assert pack["status"] == "processing"
        assert await pack_inputs(app) == 1

        stub.animal_errors = {}
        answer = await google.deliver(client, task, retry_count=1)
        assert (answer.status_code, answer.json()["status"]) == (200, "succeeded")
        assert stub.received[1]["animal"][0] == b"cat"  # only what was left
        assert await pack_inputs(app) == 0


async def test_no_token_reaches_the_logs(queued_app, google, stub, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with queued_app() as app, client_for(app) as client:
        _, generation_id = await queued_upload(client)
        url = job_url(generation_id)
        tokens = [
            google.token(url, key=SigningKey(google.key.key_id)),  # forged
            google.token("https://elsewhere.example/work"),  # wrong audience
            google.token(url, expires_in_s=-120),  # expired
            google.token(url),  # accepted
        ]
        for token in tokens:
            await client.post(url, headers={"Authorization": f"Bearer {token}"})
    assert "refused" in caplog.text  # the refusals were logged, without the tokens
    for token in tokens:
        for part in token.split("."):
            assert part not in caplog.text
