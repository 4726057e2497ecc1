"""POST /v1/packs and GET /v1/packs/{id}, respx standing in for the function: one call for the
pack, a generation per animal, derived status, idempotency, the rate limit all or nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from api_testing import auth, client_for, create_user
from function_stub import (
    FUNCTION_URL,
    FunctionStub,
    a_selfie,
    assert_problem,
    function_stubbed,
    upload,
    upload_pack,
    wait_finished,
)
from sqlalchemy import func, select

from api.animals import CATALOGUE_ORDER
from api.generations import lifecycle
from api.generations.models import Generation, Pack, PackInput

SELFIE = a_selfie((600, 400))


@pytest.fixture
def stub() -> Any:
    with function_stubbed(FunctionStub()) as stub:
        yield stub


@pytest.fixture
def pack_app(app_factory: Any, stub: FunctionStub) -> Any:
    def start(**overrides: Any) -> Any:
        # Not isolated: async work commits from tasks of its own.
        return app_factory(**({"isolated": False, "function_url": FUNCTION_URL} | overrides))

    return start


async def count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int(await session.scalar(stmt) or 0)


def sent_animals(stub: FunctionStub, call: int = -1) -> list[str]:
    parts = stub.received[call]
    if "animals" in parts:
        return parts["animals"][0].decode().split(",")
    return [parts["animal"][0].decode()]


async def test_a_sync_pack_is_one_call_and_a_generation_per_animal(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "Fox, cat,panda")
        assert response.status_code == 201, response.text
        pack = response.json()
        assert pack.keys() == {
            "id",
            "status",
            "animals",
            "style",
            "generations",
            "created_at",
            "completed_at",
        }
        assert (pack["status"], pack["animals"]) == ("succeeded", ["fox", "cat", "panda"])
        assert pack["style"] == "character"
        assert stub.received[0]["style"][0] == b"character"
        assert pack["completed_at"] is not None
        # One upload, one call to the function, the animals in the order asked for.
        assert len(stub.received) == 1
        assert sent_animals(stub) == ["fox", "cat", "panda"]
        generations = pack["generations"]
        assert [g["animal"] for g in generations] == ["fox", "cat", "panda"]
        assert {g["status"] for g in generations} == {"succeeded"}
        assert {g["pack_id"] for g in generations} == {pack["id"]}
        assert all(g["image_url"] and g["faces"] for g in generations)
        assert len({g["image_url"] for g in generations}) == 3
        # Each is in the history like any other generation, naming its pack.
        history = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
        assert {g["id"] for g in history} == {g["id"] for g in generations}
        assert {g["pack_id"] for g in history} == {pack["id"]}
        again = await client.get(f"/v1/packs/{pack['id']}", headers=auth(key))
        assert again.status_code == 200
        assert [g["id"] for g in again.json()["generations"]] == [g["id"] for g in generations]
        # A single upload is not in a pack.
        single = await upload(client, key, SELFIE, "bear")
        assert single.json()["pack_id"] is None


async def test_all_means_the_whole_catalogue_in_its_order(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "all")
        assert response.status_code == 201, response.text
        assert response.json()["animals"] == list(CATALOGUE_ORDER)
        assert sent_animals(stub) == list(CATALOGUE_ORDER)
        assert await count(app, Generation) == len(CATALOGUE_ORDER)


async def test_one_animal_failing_fails_only_that_generation(pack_app, stub) -> None:
    stub.animal_errors = {"cat": "content_blocked"}
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat,panda")
        assert response.status_code == 201, response.text
        pack = response.json()
        assert pack["status"] == "partial"
        by_animal = {g["animal"]: g for g in pack["generations"]}
        assert by_animal["cat"]["status"] == "failed"
        assert by_animal["cat"]["error"] == {
            "code": "content_blocked",
            "detail": "cat: content_blocked",
        }
        assert by_animal["cat"]["image_url"] is None
        assert by_animal["fox"]["status"] == by_animal["panda"]["status"] == "succeeded"


async def test_a_pack_that_fails_whole_answers_the_problem(pack_app, stub) -> None:
    stub.status, stub.body = 422, {"error": "no_face_detected", "detail": "no face found"}
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat")
        assert_problem(response, 422, "no_face_detected")
        # As for a single generation, the failed records stay in the history.
        async with app.state.sessionmaker() as session:
            statuses = (await session.scalars(select(Generation.error_code))).all()
        assert statuses == ["no_face_detected", "no_face_detected"]


async def test_an_async_pack_answers_202_and_finishes_in_the_background(pack_app, stub) -> None:
    stub.gate = asyncio.Event()
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat", prefer="respond-async")
        assert response.status_code == 202, response.text
        pack = response.json()
        assert response.headers["location"] == f"/v1/packs/{pack['id']}"
        assert response.headers["preference-applied"] == "respond-async"
        assert pack["status"] == "pending"
        assert {g["status"] for g in pack["generations"]} == {"pending"}
        # One kept upload for the pack, not one per animal.
        assert await count(app, PackInput) == 1
        await stub.arrived.wait()
        assert (await client.get(response.headers["location"], headers=auth(key))).json()[
            "status"
        ] == "processing"
        stub.gate.set()
        done = await wait_finished(client, key, response.headers["location"])
        assert done["status"] == "succeeded"
        assert len(stub.received) == 1
        assert await count(app, PackInput) == 0


async def test_an_idempotent_retry_returns_the_same_pack(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        first = await upload_pack(client, key, SELFIE, "fox,cat", idempotency_key="pack-1")
        again = await upload_pack(client, key, SELFIE, "fox,cat", idempotency_key="pack-1")
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json()["id"] == first.json()["id"]

        def without_links(pack: dict[str, Any]) -> list[dict[str, Any]]:
            return [{**g, "image_url": None} for g in pack["generations"]]  # signed afresh

        assert without_links(again.json()) == without_links(first.json())
        assert len(stub.received) == 1
        assert await count(app, Pack) == 1
        other = await upload_pack(client, key, SELFIE, "fox,panda", idempotency_key="pack-1")
        assert_problem(other, 409, "conflict")


async def test_a_retry_runs_again_only_the_animals_that_failed_retryably(pack_app, stub) -> None:
    stub.animal_errors = {"cat": "upstream_unavailable", "panda": "content_blocked"}
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        first = await upload_pack(client, key, SELFIE, "fox,cat,panda", idempotency_key="k")
        assert first.json()["status"] == "partial"
        stub.animal_errors = {}
        again = await upload_pack(client, key, SELFIE, "fox,cat,panda", idempotency_key="k")
        assert again.status_code == 201, again.text
        assert again.json()["id"] == first.json()["id"]
        by_animal = {g["animal"]: g for g in again.json()["generations"]}
        assert by_animal["cat"]["status"] == "succeeded"  # ran again
        assert by_animal["panda"]["error"]["code"] == "content_blocked"  # the photo's answer
        assert by_animal["fox"]["id"] == first.json()["generations"][0]["id"]
        assert sent_animals(stub) == ["cat"]
        assert len(stub.received) == 2


async def test_a_pack_that_would_cross_the_rate_limit_is_refused_whole(pack_app, stub) -> None:
    async with pack_app(rate_limit_generations=5) as app, client_for(app) as client:
        _, key = await create_user(client)
        for animal in ("fox", "cat", "bear"):
            assert (await upload(client, key, SELFIE, animal)).status_code == 201
        refused = await upload_pack(client, key, SELFIE, "fox,cat,panda")
        body = assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        assert "3 more need room" in body["detail"]
        # Nothing of the pack was written, and the function was not called for it.
        assert await count(app, Pack) == 0
        assert await count(app, Generation) == 3
        assert len(stub.received) == 3
        # Two fit.
        assert (await upload_pack(client, key, SELFIE, "fox,cat")).status_code == 201
        assert await count(app, Generation) == 5


async def test_a_pack_bigger_than_the_limit_itself_is_422(pack_app, stub) -> None:
    async with pack_app(rate_limit_generations=3) as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload_pack(client, key, SELFIE, "fox,cat,panda,bear")
        body = assert_problem(response, 422, "invalid_request")
        assert "can never fit" in body["detail"]
        assert await count(app, Generation) == 0


async def test_concurrent_packs_cannot_both_pass_the_rate_limit(app_factory, stub) -> None:
    async with (
        app_factory(
            isolated=False, function_url="http://function.test/", rate_limit_generations=6
        ) as app,
        client_for(app) as client,
    ):
        _, key = await create_user(client)
        answers = await asyncio.gather(
            *(upload_pack(client, key, SELFIE, "fox,cat,panda,bear") for _ in range(2))
        )
        assert sorted(a.status_code for a in answers) == [201, 429]
        assert await count(app, Generation) == 4
        assert await count(app, Pack) == 1


@pytest.mark.parametrize(
    ("animals", "words"),
    [
        ("fox,unicorn", "unknown animal 'unicorn'"),
        ("fox,Fox", "named twice"),
        ("", "is empty"),
        (" , ,", "is empty"),
    ],
)
async def test_bad_animals_are_422_naming_the_choices_and_write_nothing(
    pack_app, stub, animals, words
) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        body = assert_problem(
            await upload_pack(client, key, SELFIE, animals), 422, "invalid_request"
        )
        assert words in body["detail"]
        assert "koala" in body["detail"]
        assert "`all`" in body["detail"]
        assert await count(app, Generation) == 0
        assert not stub.received


async def test_the_animals_field_is_required(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await client.post(
            "/v1/packs",
            files={"image": ("selfie.jpg", SELFIE, "image/jpeg")},
            data={"animal": "fox"},
            headers=auth(key),
        )
        body = assert_problem(response, 422, "invalid_request")
        assert "`animals`" in body["detail"]


async def test_someone_elses_pack_and_an_unknown_one_are_404(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, owner = await create_user(client)
        _, other = await create_user(client)
        pack = (await upload_pack(client, owner, SELFIE, "fox,cat")).json()
        assert_problem(
            await client.get(f"/v1/packs/{pack['id']}", headers=auth(other)), 404, "not_found"
        )
        missing = await client.get(f"/v1/packs/{uuid.uuid4()}", headers=auth(owner))
        assert_problem(missing, 404, "not_found")
        assert (await client.get(f"/v1/packs/{pack['id']}")).status_code == 401


async def test_deleting_a_generation_of_a_pack_leaves_the_others(pack_app, stub, tmp_path) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        pack = (await upload_pack(client, key, SELFIE, "fox,cat,panda")).json()
        fox, cat, panda = (g["id"] for g in pack["generations"])
        assert (await client.delete(f"/v1/generations/{cat}", headers=auth(key))).status_code == 204
        left = (await client.get(f"/v1/packs/{pack['id']}", headers=auth(key))).json()
        assert [g["id"] for g in left["generations"]] == [fox, panda]
        assert left["animals"] == ["fox", "cat", "panda"]  # what was asked stays
        assert left["status"] == "succeeded"
        for generation_id in (fox, panda):
            await client.delete(f"/v1/generations/{generation_id}", headers=auth(key))
        # The last one takes the pack with it.
        gone = await client.get(f"/v1/packs/{pack['id']}", headers=auth(key))
        assert_problem(gone, 404, "not_found")
        assert await count(app, Pack) == 0


async def test_erasing_the_user_erases_their_packs(pack_app, stub) -> None:
    async with pack_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        _, keeper = await create_user(client)
        await upload_pack(client, key, SELFIE, "fox,cat", prefer="respond-async")
        await upload_pack(client, keeper, SELFIE, "bear,koala")
        assert (await client.delete("/v1/users/me", headers=auth(key))).status_code == 204
        assert await count(app, Pack) == 1
        assert await count(app, PackInput) == 0
        assert await count(app, Generation) == 2


async def test_packs_are_documented_in_openapi_with_examples(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    post = schema["paths"]["/v1/packs"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["required"]) == {"image", "animals"}
    assert form["properties"]["animals"]["examples"]
    assert {"201", "202", "409", "422", "429"} <= set(post["responses"])
    pack = schema["components"]["schemas"]["PackPublic"]
    assert pack["examples"][0]["status"] == "partial"
    assert set(pack["properties"]["status"]["enum"]) == {
        "pending",
        "processing",
        "succeeded",
        "partial",
        "failed",
    }
    assert "/v1/packs/{pack_id}" in schema["paths"]
    generation = schema["components"]["schemas"]["GenerationPublic"]
    assert "pack_id" in generation["properties"]


async def test_an_unfinished_async_pack_is_resumed_at_start_as_one_call(app_factory, stub) -> None:
    async with (
        app_factory(isolated=False, function_url=FUNCTION_URL) as app,
        client_for(app) as client,
    ):
        user, key = await create_user(client)
        user_id = uuid.UUID(user["id"])
        # As a process that died after accepting an async pack (its upload kept) and a sync one
        # (its upload held only by its request) leaves them.
        kept_pack = await _write_pack(app, user_id, claimed=False)
        lost_pack = await _write_pack(app, user_id, claimed=True, age=timedelta(hours=1))
        async with (
            app_factory(isolated=False, function_url=FUNCTION_URL) as restarted,
            client_for(restarted) as again,
        ):
            done = await wait_finished(again, key, f"/v1/packs/{kept_pack}")
            assert done["status"] == "succeeded"
            assert len(stub.received) == 1
            assert sent_animals(stub) == ["fox", "cat"]
            # Nothing to resume: failed retryably (a retry with its key runs it again).
            lost = (await again.get(f"/v1/packs/{lost_pack}", headers=auth(key))).json()
            assert lost["status"] == "failed"
            assert {g["error"]["code"] for g in lost["generations"]} == {"upstream_timeout"}
            assert await count(app, PackInput) == 0


async def _write_pack(
    app: Any, user_id: uuid.UUID, *, claimed: bool, age: timedelta = timedelta(0)
) -> uuid.UUID:
    pack, generations = lifecycle.born_pack(
        user_id, ["fox", "cat"], style="character", idempotency_key=None, request_hash=None,
        claimed=claimed,
    )  # fmt: skip
    for generation in generations:
        generation.updated_at -= age
    stored = None if claimed else lifecycle.StoredInput(SELFIE, "image/jpeg")
    async with app.state.sessionmaker() as session, session.begin():
        await lifecycle.insert_pack(session, pack, generations, stored)
    return pack.id
