"""Migrations: upgrade from empty, downgrade to base, and no drift from the models."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from api_testing import run_alembic
from sqlalchemy import inspect

import api.generations.models
import api.users.models
import api.webhooks.models  # noqa: F401 - the tables the models declare
from api.db import Base, build_engine

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
