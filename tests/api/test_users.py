"""Sign-up, profile, erasure and the admin list."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from api_testing import add_generation, assert_problem, auth, client_for, create_user, put_object
from sqlalchemy import func, select

from api.generations.models import Generation, GenerationStatus
from api.users.models import ApiKey, User


async def test_sign_up_shows_the_key_once(client) -> None:
    response = await client.post("/v1/users", json={"username": "ada", "email": "Ada@Example.COM"})
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "ada"
    assert body["email"] == "ada@example.com"
    assert body["api_key"].startswith("aa_")
    me = await client.get("/v1/users/me", headers=auth(body["api_key"]))
    assert me.status_code == 200
    assert "api_key" not in me.json()
    assert me.json() == {k: v for k, v in body.items() if k != "api_key"}


@pytest.mark.parametrize(
    ("second", "detail"),
    [
        ({"username": "ada", "email": "other@example.com"}, "username"),
        ({"username": "ada2", "email": "ADA@example.com"}, "email"),
    ],
)
async def test_taken_username_or_email_is_409(client, second, detail) -> None:
    await create_user(client, "ada", "ada@example.com")
    response = await client.post("/v1/users", json=second)
    assert_problem(response, 409, "conflict")
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    "pair",
    [
        [("racer", "a@example.com"), ("racer", "b@example.com")],
        [("racer1", "same@example.com"), ("racer2", "same@example.com")],
    ],
    ids=["username", "email"],
)
async def test_concurrent_duplicates_one_wins(app_factory, pair) -> None:
    # A committing app: each request has its own connection, so the race is real.
    async with app_factory(isolated=False) as app, client_for(app) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/users", json={"username": u, "email": e}) for u, e in pair)
        )
        assert sorted(r.status_code for r in responses) == [201, 409]
        async with app.state.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 1
            assert await session.scalar(select(func.count()).select_from(ApiKey)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "email": "ab@example.com"},
        {"username": "has space", "email": "x@example.com"},
        {"username": "fine", "email": "not-an-email"},
        {"username": "fine"},
        {"username": "fine", "email": "f@example.com", "admin": True},
    ],
)
async def test_bad_sign_up_is_422(client, body) -> None:
    response = await client.post("/v1/users", json=body)
    assert_problem(response, 422, "invalid_request")


async def test_delete_me_erases_rows_and_files(client, app, db) -> None:
    user, key = await make_user_with_history(client, app, db)
    other, other_key = await make_user_with_history(client, app, db)

    response = await client.delete("/v1/users/me", headers=auth(key))

    assert response.status_code == 204
    user_id = uuid.UUID(user["id"])
    assert await db.get(User, user_id) is None
    assert await count(db, Generation.user_id == user_id) == 0
    assert await count(db, ApiKey.user_id == user_id) == 0
    root = app.state.settings.storage_dir
    assert not (root / "avatars" / user["id"]).exists()
    assert len(list((root / "avatars" / other["id"]).iterdir())) == 2
    assert (await client.get("/v1/users/me", headers=auth(key))).status_code == 401
    assert (await client.get("/v1/users/me", headers=auth(other_key))).status_code == 200


async def make_user_with_history(client, app, db):
    user, key = await create_user(client)
    for n in range(2):
        name = f"avatars/{user['id']}/{n}.png"
        put_object(app.state.store, name, b"\x89PNG fake")
        await add_generation(db, user["id"], status=GenerationStatus.succeeded, object_name=name)
    return user, key


async def count(db, condition) -> int:
    table = condition.left.table
    return await db.scalar(select(func.count()).select_from(table).where(condition))


async def test_admin_lists_every_user_once(client, admin_headers) -> None:
    created = {(await create_user(client))[0]["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/users", params=params, headers=admin_headers)).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == created


@pytest.mark.parametrize(
    "body",
    [
        {"username": "nul", "email": "a\x00b@example.com"},
        {"username": "tab", "email": "a@exa\tmple.com"},
        {"username": "del", "email": "a\x7f@example.com"},
        {"username": "nul\x00x", "email": "n@example.com"},
        {"username": "bell\x07", "email": "b@example.com"},
        {"username": "nl\nx", "email": "c@example.com"},
    ],
)
async def test_control_characters_are_422_not_500(client, body) -> None:
    # PostgreSQL refuses a NUL in text (psycopg DataError): it must never get that far.
    assert_problem(await client.post("/v1/users", json=body), 422, "invalid_request")


async def test_usernames_are_unique_whatever_their_case_and_shown_as_typed(client) -> None:
    first, _ = await create_user(client, "Bob", "bob1@example.com")
    assert first["username"] == "Bob"
    for variant in ("bob", "BOB", "bOb"):
        response = await client.post(
            "/v1/users", json={"username": variant, "email": f"{variant}2@example.com"}
        )
        assert_problem(response, 409, "conflict")
        assert "username" in response.json()["detail"]
