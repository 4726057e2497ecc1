"""Every error leaves as problem+json: the framework's 404/405/422, ours, and the unexpected."""

from __future__ import annotations

import pytest
from api_testing import assert_problem, auth, client_for
from asgi_lifespan import LifespanManager
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from api.config import Settings
from api.main import create_app


async def test_unknown_route_is_404(client) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405(client) -> None:
    response = await client.put("/v1/animals")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "expecting property name enclosed in double quotes at character 1"),
        (b'{"username": "a"', "at character 16"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
async def test_malformed_json_is_400_saying_what_is_wrong(client, body, words) -> None:
    response = await client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "invalid_request")
    assert "the body is not valid JSON" in response.json()["detail"]
    assert words in response.json()["detail"]
    assert "0: JSON decode error" not in response.text


async def test_a_missing_body_is_422_naming_it(client) -> None:
    response = await client.post("/v1/users", headers={"Content-Type": "application/json"})
    assert_problem(response, 422, "invalid_request")
    assert response.json()["detail"] == "body: Field required"


async def test_unexpected_error_is_500_without_internals(app_factory) -> None:
    async with app_factory() as app:

        @app.get("/boom")
        async def boom() -> None:
            msg = "secret internal detail"
            raise RuntimeError(msg)

        async with client_for(app, raise_app_exceptions=False) as client:
            response = await client.get("/boom")
    assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("field", ["admin_api_key", "media_signing_key", "webhook_encryption_key"])
def test_placeholder_secrets_are_refused_outside_development(environment, field) -> None:
    real = {
        "admin_api_key": "a" * 40,
        "media_signing_key": "b" * 40,
        "webhook_encryption_key": "c" * 40,
    }
    with pytest.raises(ValidationError, match=field.upper()):
        Settings(environment=environment, **(real | {field: "changeme"}))
    Settings(environment=environment, **real)  # real secrets are accepted
    Settings(environment="development")  # the placeholders are fine for a local run


async def test_database_outage_is_503_not_500(settings_factory, tmp_path) -> None:
    # A SQLite file in a directory that does not exist: every connection attempt fails.
    missing = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"
    app = create_app(settings_factory(database_url=missing))
    async with LifespanManager(app), client_for(app, raise_app_exceptions=False) as client:
        response = await client.get("/v1/users/me", headers=auth("aa_some-key"))
    assert_problem(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "5"


async def test_a_value_the_database_refuses_is_422_without_its_parameters(app_factory) -> None:
    async with app_factory() as app:

        @app.get("/refused")
        async def refused() -> None:
            orig = ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            raise sa_exc.DataError("INSERT ...", {"email": "secret@example.com"}, orig)

        async with client_for(app, raise_app_exceptions=False) as client:
            response = await client.get("/refused")
    assert_problem(response, 422, "invalid_request")
    assert "secret" not in response.text


async def test_problem_type_resolves_to_a_page_that_explains_the_code(client) -> None:
    problem = (await client.get("/v1/nothing-here")).json()
    assert problem["type"] == "/problems/not_found"

    page = await client.get(problem["type"])

    assert page.status_code == 200
    assert page.json()["code"] == "not_found"
    assert page.json()["status"] == 404
    assert "another user" in page.json()["description"]


@pytest.mark.parametrize(
    "code",
    ["invalid_request", "rate_limited", "upstream_unavailable", "internal_error", "conflict"],
)
async def test_every_problem_code_has_a_page(client, code: str) -> None:
    page = await client.get(f"/problems/{code}")
    assert page.status_code == 200
    assert page.json()["code"] == code


async def test_unknown_problem_type_is_404(client) -> None:
    assert_problem(await client.get("/problems/no_such_code"), 404, "not_found")
