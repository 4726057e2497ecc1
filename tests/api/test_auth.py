"""Bearer keys: missing or unknown → 401 with WWW-Authenticate, user key on admin routes → 403."""

from __future__ import annotations

import hashlib

import pytest
from api_testing import assert_problem, auth
from sqlalchemy import select

from api.security import generate_api_key, hash_api_key
from api.users.models import ApiKey


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        auth("aa_not-a-real-key"),
    ],
    ids=["missing", "empty", "basic", "unknown"],
)
async def test_missing_or_bad_key_is_401(client, headers) -> None:
    response = await client.get("/v1/users/me", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_user_key_on_admin_route_is_403(client, make_user) -> None:
    _, key = await make_user()
    response = await client.get("/v1/users", headers=auth(key))
    assert_problem(response, 403, "forbidden")


async def test_unknown_key_on_admin_route_is_401(client) -> None:
    response = await client.get("/v1/users", headers=auth("aa_unknown"))
    assert_problem(response, 401, "unauthorized")


async def test_admin_key_is_not_a_user(client, admin_headers) -> None:
    response = await client.get("/v1/users/me", headers=admin_headers)
    assert_problem(response, 401, "unauthorized")


async def test_key_is_stored_only_as_its_hash(client, make_user, db) -> None:
    user, key = await make_user()
    stored = (await db.execute(select(ApiKey))).scalars().all()
    assert [row.key_hash for row in stored] == [hashlib.sha256(key.encode()).hexdigest()]
    assert all(key not in (row.key_hash, row.prefix) for row in stored)
    assert str(stored[0].user_id) == user["id"]


def test_generated_keys_carry_32_random_bytes() -> None:
    keys = {generate_api_key() for _ in range(100)}
    assert len(keys) == 100
    # "aa_" + base64url of 32 bytes = 43 characters.
    assert all(k.startswith("aa_") and len(k) == 3 + 43 for k in keys)
    assert hash_api_key("aa_x") == hashlib.sha256(b"aa_x").hexdigest()
