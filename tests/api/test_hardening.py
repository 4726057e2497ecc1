"""What a hostile trial found, each answered: small JSON bodies, every method in Allow, one
`animal`, the enum in OpenAPI, and one unit for the upload limit in messages and the README."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from api_testing import assert_problem, auth
from function_stub import a_selfie

from api.animals import CATALOGUE_ORDER
from api.config import REPO_ROOT, Settings
from api.errors import size_text

JSON_LIMIT = Settings.model_fields["max_json_body_bytes"].default


class CountingBody:
    """A request body handed out in chunks, counting how many the server pulled."""

    def __init__(self, chunks: int, chunk: bytes) -> None:
        self.chunks, self.chunk = chunks, chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.chunk


def big_json(size: int) -> bytes:
    """A syntactically fine JSON object of about `size` bytes."""
    return b'{"username": "' + b"a" * size + b'", "email": "big@example.com"}'


# --- JSON bodies: a small limit, before buffering ------------------------------------------------


async def test_a_declared_large_json_body_is_413_before_it_is_read(client) -> None:
    body = CountingBody(chunks=1600, chunk=b" " * 64 * 1024)  # 100 MB
    headers = {"content-type": "application/json", "content-length": str(1600 * 64 * 1024)}
    response = await client.post("/v1/users", content=body, headers=headers)
    problem = response.json()
    assert_problem(response, 413, "request_too_large")
    assert problem["detail"] == "the request body is over the 16 kB limit of this endpoint"
    assert body.pulled == 0


async def test_a_chunked_large_json_body_is_413_once_past_the_limit(client) -> None:
    body = CountingBody(chunks=1600, chunk=b" " * 4096)  # no Content-Length: counted as it comes
    response = await client.post(
        "/v1/users", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "request_too_large")
    assert body.pulled <= JSON_LIMIT // 4096 + 1


async def test_a_body_just_under_the_limit_is_read(client) -> None:
    body = big_json(JSON_LIMIT - 100)
    assert len(body) <= JSON_LIMIT
    response = await client.post(
        "/v1/users", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_request")  # read and validated: the name is too long


async def test_the_webhook_body_has_the_limit_too(client, make_user) -> None:
    _, key = await make_user()
    response = await client.put(
        "/v1/users/me/webhook",
        content=b'{"url": "https://example.com/' + b"a" * JSON_LIMIT + b'"}',
        headers={**auth(key), "content-type": "application/json"},
    )
    assert_problem(response, 413, "request_too_large")


async def test_a_route_that_reads_no_body_does_not_run_on_a_body_over_the_limit(
    client, make_user
) -> None:
    # FastAPI's own max_body_size would erase the account, then answer 413.
    _, key = await make_user()
    response = await client.request(
        "DELETE", "/v1/users/me", content=b"x" * (JSON_LIMIT + 1), headers=auth(key)
    )
    assert_problem(response, 413, "request_too_large")
    assert (await client.get("/v1/users/me", headers=auth(key))).status_code == 200


async def test_uploads_keep_their_own_larger_limit(client, make_user) -> None:
    _, key = await make_user()
    image = a_selfie((1200, 900))
    assert len(image) > JSON_LIMIT
    response = await client.post(
        "/v1/generations",
        files={"image": ("a.jpg", image, "image/jpeg")},
        data={"animal": "fox"},
        headers=auth(key),
    )
    assert response.status_code != 413  # it reached the function (unreachable in these tests)


# --- the upload limit: one unit ------------------------------------------------------------------


async def test_an_upload_over_the_limit_names_it_in_the_readmes_unit(app_factory) -> None:
    limit = Settings.model_fields["max_upload_bytes"].default
    async with (
        app_factory() as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        signup = await client.post(
            "/v1/users", json={"username": "big", "email": "big@example.com"}
        )
        key = signup.json()["api_key"]
        headers = {
            **auth(key),
            "content-type": "multipart/form-data; boundary=xyz",
            "content-length": str(limit * 2),
        }
        response = await client.post("/v1/generations", content=b"", headers=headers)
    assert_problem(response, 413, "image_too_large")
    assert response.json()["detail"] == "the upload is over the 20 MB limit for an image"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"{size_text(limit)}" in readme
    assert str(limit) not in response.text


@pytest.mark.parametrize(
    ("size", "text"),
    [(20 * 1024 * 1024, "20 MB"), (16 * 1024, "16 kB"), (1000, "1000 bytes"), (1536, "1536 bytes")],
)
def test_sizes_read_as_people_read_them(size: int, text: str) -> None:
    assert size_text(size) == text


# --- methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/users", "GET, POST"),
        ("PATCH", "/v1/users", "GET, POST"),
        ("OPTIONS", "/v1/users/me", "DELETE, GET"),
        ("PUT", "/v1/users/me", "DELETE, GET"),
        ("OPTIONS", "/v1/generations/00000000-0000-0000-0000-000000000000", "DELETE, GET"),
        ("POST", "/v1/generations/00000000-0000-0000-0000-000000000000", "DELETE, GET"),
        ("DELETE", "/v1/generations", "GET, POST"),
        ("POST", "/v1/users/me/webhook", "DELETE, GET, PUT"),
        ("PUT", "/v1/animals", "GET"),
    ],
)
async def test_405_names_every_method_the_path_has(client, method, path, allowed) -> None:
    response = await client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


# --- one `animal` --------------------------------------------------------------------------------


async def test_two_animal_fields_are_422_naming_the_problem(client, make_user) -> None:
    _, key = await make_user()
    response = await client.post(
        "/v1/generations",
        files=[
            ("image", ("a.jpg", a_selfie((300, 200)), "image/jpeg")),
            ("animal", (None, "fox")),
            ("animal", (None, "cat")),
        ],
        headers=auth(key),
    )
    assert_problem(response, 422, "invalid_request")
    assert response.json()["detail"] == "send one `animal` field, not several"


async def test_two_animals_fields_of_a_pack_are_422_too(client, make_user) -> None:
    _, key = await make_user()
    response = await client.post(
        "/v1/packs",
        files=[
            ("image", ("a.jpg", a_selfie((300, 200)), "image/jpeg")),
            ("animals", (None, "fox")),
            ("animals", (None, "cat")),
        ],
        headers=auth(key),
    )
    assert_problem(response, 422, "invalid_request")
    assert "send one `animals` field, not several" in response.json()["detail"]


# --- OpenAPI says it -----------------------------------------------------------------------------


async def test_openapi_lists_the_animals_and_documents_400_and_413(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    upload = paths["/v1/generations"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["animal"]["enum"] == list(CATALOGUE_ORDER)
    pack = paths["/v1/packs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    pattern = re.compile(pack["schema"]["properties"]["animals"]["pattern"])
    assert pattern.match("fox,panda,cat")
    assert pattern.match("all")
    assert not pattern.match("fox,,cat")
    assert not pattern.match("unicorn")
    for path, method in (("/v1/users", "post"), ("/v1/users/me/webhook", "put")):
        responses = paths[path][method]["responses"]
        assert "not valid JSON" in responses["400"]["description"]
        assert "request_too_large" in responses["413"]["description"]
    codes = spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    assert "request_too_large" in codes


async def test_the_problem_page_explains_request_too_large(client) -> None:
    response = await client.get("/problems/request_too_large")
    assert response.status_code == 200
    assert response.json()["status"] == 413
    assert "16 kB" in response.json()["description"]


# --- what the schema says is what the server takes (schemathesis' findings) ------------------


@pytest.mark.parametrize(
    "email", ["a\x85b@example.com", "a\u00a0b@example.com", "a@exa\u2028mple.com"]
)
async def test_an_email_with_a_unicode_space_is_refused_as_the_schema_says(client, email) -> None:
    response = await client.post("/v1/users", json={"username": "spacey", "email": email})
    assert_problem(response, 422, "invalid_request")
    pattern = (await client.get("/openapi.json")).json()["components"]["schemas"]["UserCreate"][
        "properties"
    ]["email"]["pattern"]
    assert "\\s" not in pattern  # ECMA-262 and the server would read it differently


@pytest.mark.parametrize("body", [{"rotate": 0}, {"rotate": "yes"}, {"url": None}, {}])
async def test_a_webhook_body_the_schema_refuses_is_422(client, make_user, body) -> None:
    _, key = await make_user()
    response = await client.put("/v1/users/me/webhook", json=body, headers=auth(key))
    assert_problem(response, 422, "invalid_request")


async def test_the_webhook_schema_says_a_url_or_a_rotation_is_needed(client) -> None:
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["WebhookUpdate"]
    assert schema["anyOf"] == [
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
        {"required": ["rotate"], "properties": {"rotate": {"const": True}}},
    ]
    assert re.match(schema["properties"]["url"]["pattern"], "HTTPS://example.com/hook")
    assert not re.match(schema["properties"]["url"]["pattern"], "ftp://example.com/hook")


async def test_an_upload_to_the_path_with_a_trailing_slash_is_redirected_not_refused(
    client, make_user
) -> None:
    _, key = await make_user()
    response = await client.post(
        "/v1/generations/",
        files={"image": ("a.jpg", a_selfie((1200, 900)), "image/jpeg")},
        data={"animal": "fox"},
        headers=auth(key),
    )
    assert response.status_code == 307
    assert response.headers["location"].endswith("/v1/generations")


async def test_a_body_that_is_not_utf8_is_400_in_words(client) -> None:
    response = await client.post(
        "/v1/users", content=b'{"username": "\xff"}', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "invalid_request")
    assert response.json()["detail"].startswith("the body could not be read: send UTF-8")
