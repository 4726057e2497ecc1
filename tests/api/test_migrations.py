"""Migrations: upgrade from empty, downgrade to base, no drift from the models, and the style
migration's answer for the records already there."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from api_testing import run_alembic
from sqlalchemy import inspect

import api.generations.models
import api.users.models
import api.webhooks.models  # noqa: F401 - the tables the models declare
from api.db import Base, build_engine, utcnow

TABLES = {
    "users",
    "api_keys",
    "generations",
    "generation_inputs",
    "packs",
    "pack_inputs",
    "webhooks",
    "webhook_deliveries",
}


async def table_names(url: str) -> set[str]:
    engine = build_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def schema_drift(url: str) -> list[object]:
    engine = build_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn):
                context = MigrationContext.configure(
                    sync_conn,
                    opts={"compare_type": True, "render_as_batch": True},
                )
                return compare_metadata(context, Base.metadata)

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_and_downgrade_to_base(fresh_database_url) -> None:
    url = fresh_database_url
    assert await table_names(url) == set()
    await asyncio.to_thread(run_alembic, url, "upgrade", "head")
    assert await table_names(url) == TABLES | {"alembic_version"}
    await asyncio.to_thread(run_alembic, url, "downgrade", "base")
    assert await table_names(url) == {"alembic_version"}
    # And back up again: the downgrade left nothing behind that blocks a new upgrade.
    await asyncio.to_thread(run_alembic, url, "upgrade", "head")
    assert await table_names(url) == TABLES | {"alembic_version"}


async def test_migrations_match_the_models(fresh_database_url) -> None:
    await asyncio.to_thread(run_alembic, fresh_database_url, "upgrade", "head")
    assert await schema_drift(fresh_database_url) == []


USERS = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("username", sa.String()),
    sa.column("email", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
GENERATIONS = sa.table(
    "generations",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("animal", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("style", sa.String()),  # from 0006 on
)
GENERATION_INPUTS = sa.table(
    "generation_inputs",
    sa.column("generation_id", sa.Uuid()),
    sa.column("image", sa.LargeBinary()),
    sa.column("content_type", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def generation_row(user_id: uuid.UUID) -> dict[str, object]:
    """A pending generation as a raw insert writes it (no style named)."""
    now = utcnow()
    return {"id": uuid.uuid4(), "user_id": user_id, "status": "pending", "animal": "fox",
            "attempts": 0, "created_at": now, "updated_at": now}  # fmt: skip


async def run_sql(url: str, *statements: sa.Executable) -> list[sa.Row[Any]]:
    """Execute the statements in one transaction; the last one's rows, if it returns any."""
    engine = build_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(statement)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_the_style_migration_gives_earlier_records_paint_and_later_ones_character(
    fresh_database_url,
) -> None:
    url = fresh_database_url
    await asyncio.to_thread(run_alembic, url, "upgrade", "0005")
    user_id = uuid.uuid4()
    earlier = generation_row(user_id)
    kept = {"generation_id": earlier["id"], "image": b"\xff\xd8\xff", "content_type": "image/jpeg",
            "created_at": utcnow()}  # fmt: skip
    user = {"id": user_id, "username": "old", "email": "old@example.com", "created_at": utcnow()}
    await run_sql(
        url,
        USERS.insert().values(user),
        GENERATIONS.insert().values(earlier),
        GENERATION_INPUTS.insert().values(kept),
    )
    await asyncio.to_thread(run_alembic, url, "upgrade", "head")
    later = generation_row(user_id)
    rows = await run_sql(
        url,
        GENERATIONS.insert().values(later),
        sa.select(GENERATIONS.c.id, GENERATIONS.c.style),
    )
    assert dict(rows) == {earlier["id"]: "paint", later["id"]: "character"}
    # The pending record's kept upload is still there (rebuilding the table would cascade).
    assert await run_sql(url, sa.select(GENERATION_INPUTS.c.generation_id)) == [(earlier["id"],)]
    await asyncio.to_thread(run_alembic, url, "downgrade", "0005")
    assert len(await run_sql(url, sa.select(GENERATIONS.c.id))) == 2
