"""Liveness, readiness (database and function), and the animal catalogue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_testing import assert_problem, client_for
from asgi_lifespan import LifespanManager

from api.animals import ANIMALS
from api.main import create_app


class PostOnly(BaseHTTPRequestHandler):
    """Like the function: anything but POST gets 405."""

    def do_OPTIONS(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_OPTIONS  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def function_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PostOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_healthz(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_and_function_answer(app_factory, function_url) -> None:
    async with app_factory(function_url=function_url) as app, client_for(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_when_the_function_is_down(client) -> None:
    response = await client.get("/readyz")
    assert_problem(response, 503, "upstream_unavailable")
    assert "function" in response.json()["detail"]
    assert "retry-after" in response.headers


async def test_animals_are_the_catalogue(client) -> None:
    # The function draws the same list (tests/contract checks the two sides agree).
    response = await client.get("/v1/animals")
    assert response.status_code == 200
    assert [a["id"] for a in response.json()] == [a.id for a in ANIMALS]
    assert len(ANIMALS) == 10
    assert all(a.keys() == {"id", "name", "description"} for a in response.json())


async def test_openapi_is_served(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/generations/{generation_id}" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_not_ready_when_the_database_is_down(settings_factory, function_url, tmp_path):
    # A SQLite file in a directory that does not exist: every connection attempt fails.
    settings = settings_factory(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}",
        function_url=function_url,
    )
    app = create_app(settings)
    async with LifespanManager(app), client_for(app) as client:
        response = await client.get("/readyz")
    assert_problem(response, 503, "upstream_unavailable")
    assert "database" in response.json()["detail"]
