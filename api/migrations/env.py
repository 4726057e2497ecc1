"""Alembic environment: async engine, URL from the API's settings, batch mode for SQLite."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection, make_url

import api.generations.models
import api.users.models
import api.webhooks.models  # noqa: F401 - registers the tables on Base.metadata
from api.config import get_settings
from api.db import Base, build_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL a caller passed (tests: `Config.attributes["database_url"]`) or DATABASE_URL."""
    url: str | None = config.attributes.get("database_url")
    return url or get_settings().database_url


def ensure_sqlite_dir(url: str) -> None:
    # The default embedded database lives under var/, which a fresh clone does not have.
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = build_engine(url, pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    url = database_url()
    if context.is_offline_mode():
        run_migrations_offline(url)
        return
    ensure_sqlite_dir(url)
    asyncio.run(run_async_migrations(url))


main()
