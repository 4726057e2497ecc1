"""SQLAlchemy 2 base, engine and session factory (async: psycopg 3 or aiosqlite)."""

from __future__ import annotations

import select
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetimes are not stored; use api.db.utcnow()"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores ON DELETE CASCADE unless foreign keys are switched on per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # A pooled connection is idle, so it has nothing to read unless the server ended it (a
    # restart, pg_terminate_backend: an error message, then EOF). A zero-timeout poll of its
    # socket finds that without pool_pre_ping's round trip on every checkout; raising
    # DisconnectionError makes the pool replace it with a fresh connection.
    # poll(), not select(): a busy process has descriptors past select's limit of 1024.
    driver = dbapi_connection.driver_connection
    poller = select.poll()
    try:
        poller.register(driver.pgconn.socket, select.POLLIN)
    except (OSError, ValueError, psycopg.Error) as exc:
        raise DisconnectionError("the pooled connection is closed") from exc
    if poller.poll(0) or driver.closed:
        raise DisconnectionError("the server ended the pooled connection")


def build_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for the URL; SQLite gets foreign keys and WAL switched on.

    hide_parameters: errors (and so logs) never carry the statement's values (emails, selfies).
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True
    )
    event.listen(engine.sync_engine.pool, "checkout", _drop_if_closed_by_server)
    return engine


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
