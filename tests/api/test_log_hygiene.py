"""Logs carry no personal data: no SQL parameters, no signatures of /media links."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from uvicorn.logging import AccessFormatter

from api.access_log import ACCESS_LOGGER, MediaQueryFilter
from api.db import build_engine
from api.main import create_app

SIGNED = "/media/avatars/u/g.png?expires=1893456000&signature=" + "ab" * 32


async def test_database_errors_do_not_carry_the_statements_values(database_url) -> None:
    engine = build_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            stmt = text("SELECT * FROM no_such_table WHERE email = :email")
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(stmt, {"email": "ada@example.com"})
    finally:
        await engine.dispose()
    assert "ada@example.com" not in str(raised.value)


def access_line(path: str) -> str:
    record = logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200), None,
    )  # fmt: skip
    assert MediaQueryFilter().filter(record)
    return AccessFormatter("%(message)s", use_colors=False).format(record)


def test_media_signatures_are_stripped_from_access_lines() -> None:
    line = access_line(SIGNED)
    assert "signature" not in line
    assert "expires" not in line
    assert '"GET /media/avatars/u/g.png HTTP/1.1" 200' in line


def test_other_paths_keep_their_query() -> None:
    assert "/v1/generations?limit=5" in access_line("/v1/generations?limit=5")


def test_the_app_installs_the_filter_once(settings) -> None:
    create_app(settings)
    create_app(settings)
    filters = logging.getLogger(ACCESS_LOGGER).filters
    assert sum(isinstance(f, MediaQueryFilter) for f in filters) == 1
