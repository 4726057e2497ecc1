"""Fixtures for the API's tests: a migrated database, apps with settings overrides, clients.

PostgreSQL when TEST_DATABASE_URL is set (schemas of this session's own, dropped at the end),
SQLite in a temporary directory otherwise. Each test runs in a transaction that is rolled back;
`app_factory(isolated=False)` gives an app that really commits (for concurrency tests) and
empties the tables when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_testing import (
    ADMIN_KEY,
    BASE_URL,
    MAIN_PY,
    MEDIA_KEY,
    UNREACHABLE_URL,
    WEBHOOK_KEY,
    auth,
    client_for,
    create_user,
    empty_database,
    run_alembic,
)
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from api.config import Settings
from api.db import Base, build_engine
from api.main import create_app

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]
UserFactory = Callable[..., Awaitable[tuple[dict[str, Any], str]]]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This session's database, migrated to head."""
    with empty_database(tmp_path_factory.mktemp("db")) as url:
        run_alembic(url, "upgrade", "head")
        yield url


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, empty (not even migrated)."""
    with empty_database(tmp_path) as url:
        yield url


def _sqlite_savepoints(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT: let SQLAlchemy emit BEGIN itself.
    @event.listens_for(engine.sync_engine, "connect")
    def _no_autobegin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine behind each test's outer, rolled-back transaction."""
    engine = build_engine(database_url, pool_size=2)
    if engine.dialect.name == "sqlite":
        _sqlite_savepoints(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection in a transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions whose commits are savepoints inside the test's transaction."""
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that sees what the test's app writes, and vice versa."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def settings_factory(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test app; keyword arguments override any field."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "admin_api_key": ADMIN_KEY,
            "media_signing_key": MEDIA_KEY,
            "webhook_encryption_key": WEBHOOK_KEY,
            "storage_backend": "local",
            "storage_dir": tmp_path / "media",
            "public_base_url": BASE_URL,
            "function_url": UNREACHABLE_URL,
        }
        return Settings(**(values | overrides))

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    """The default test settings."""
    return settings_factory()


async def _empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
def app_factory(
    settings_factory: Callable[..., Settings], sessionmaker: async_sessionmaker[AsyncSession]
) -> AppFactory:
    """`async with app_factory(**overrides) as app`: a started app (lifespan run).

    isolated=True (default): its sessions share the test's rolled-back transaction.
    isolated=False: it commits through its own engine; the tables are emptied afterwards
    (unless keep_tables: a restart, whose next app empties them).
    webhook_network: the resolver and transport of its webhook deliveries (api.webhooks).
    """

    @asynccontextmanager
    async def start(
        *,
        isolated: bool = True,
        keep_tables: bool = False,
        webhook_network: Any = None,
        **overrides: Any,
    ) -> AsyncIterator[FastAPI]:
        app = create_app(settings_factory(**overrides), webhook_network=webhook_network)
        async with LifespanManager(app):
            if isolated:
                app.state.sessionmaker = sessionmaker
                yield app
                return
            try:
                yield app
            finally:
                if not keep_tables:
                    await _empty_tables(app.state.engine)

    return start


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    """The default test app, isolated in the test's transaction."""
    async with app_factory() as app:
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the default test app."""
    async with client_for(app) as client:
        yield client


@pytest.fixture
def make_user(client: httpx.AsyncClient) -> UserFactory:
    """`user, key = await make_user()` on the default client."""

    async def make(
        username: str | None = None, email: str | None = None
    ) -> tuple[dict[str, Any], str]:
        return await create_user(client, username, email)

    return make


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Headers that carry the test admin key."""
    return auth(ADMIN_KEY)


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """Where the function stores and the API serves /media from, in the contract tests."""
    return tmp_path / "media"


@pytest.fixture
def function_app(media_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real cloud_functions/main.py with the local backends, storing in `media_dir`."""
    import functions_framework

    from avatar.config import get_settings

    monkeypatch.setenv("AVATAR_BACKEND", "local")
    monkeypatch.setenv("STORAGE_DIR", str(media_dir))
    monkeypatch.setenv("MEDIA_SIGNING_KEY", MEDIA_KEY)
    monkeypatch.setenv("MEDIA_BASE_URL", f"{BASE_URL}/media")
    get_settings.cache_clear()
    yield functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    get_settings.cache_clear()


@pytest.fixture
def contract_app(
    settings_factory: Callable[..., Settings],
    sessionmaker: async_sessionmaker[AsyncSession],
    media_dir: Path,
    function_app: Any,
) -> Callable[[], AbstractAsyncContextManager[FastAPI]]:
    """`async with contract_app() as app`: the API, its forwarder's transport plugged into
    `function_app` in-process (a test module may override that fixture, e.g. with gcp)."""
    from function_stub import WSGIThreadTransport

    from api.forwarding import build_function_client

    def forwarder(settings: Settings) -> Any:
        return build_function_client(settings, transport=WSGIThreadTransport(function_app))

    @asynccontextmanager
    async def start() -> AsyncIterator[FastAPI]:
        settings = settings_factory(function_url="http://function.test/", storage_dir=media_dir)
        app = create_app(settings, forwarder_factory=forwarder)
        async with LifespanManager(app):
            app.state.sessionmaker = sessionmaker
            yield app

    return start
