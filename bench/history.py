"""Generation history at depth: keyset pagination against LIMIT/OFFSET on PostgreSQL.

Inserts --rows generations (default 1,000,000) for one user into a schema of its own, then,
through the real app in-process, times GET /v1/generations?limit=50 at page 1 and at a deep page
(10,000 by default) by cursor, beside the same pages served with OFFSET by a bench-only route that
shares everything else (auth, session, serialisation, signed links). Drops the schema at the end.

    .venv/bin/python bench/history.py [--rows 1000000] [--page 10000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from api.config import REPO_ROOT, Settings
from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from api.generations import service
from api.generations.models import Generation
from api.generations.schemas import GenerationPublic
from api.main import create_app
from api.pagination import Page, encode_cursor
from api.security import generate_api_key, hash_api_key, key_prefix

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LIMIT = 50
TIES = 10  # rows sharing one created_at, so the id tie-break is exercised too


def base_url() -> str:
    """DATABASE_URL or TEST_DATABASE_URL when they name PostgreSQL, else the local default."""
    for name in ("DATABASE_URL", "TEST_DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith("postgresql"):
            return url
    return DEFAULT_URL


@contextmanager
def private_schema(url: str) -> Iterator[str]:
    """A schema of the bench's own (migrated), dropped afterwards; yields a URL that uses it."""
    schema = f"bench_history_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        scoped_url = scoped.render_as_string(hide_password=False)
        config = Config(str(REPO_ROOT / "api" / "alembic.ini"))
        config.attributes.update(database_url=scoped_url, configure_logger=False)
        command.upgrade(config, "head")
        yield scoped_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seed(engine: Engine, rows: int) -> tuple[uuid.UUID, str]:
    """One user with a key and `rows` succeeded generations; returns (user id, key)."""
    user_id, key = uuid.uuid4(), generate_api_key()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, created_at) VALUES (:id, 'bench', "
                "'bench@example.com', now())"
            ),
            {"id": user_id},
        )
        conn.execute(
            text(
                "INSERT INTO api_keys (id, user_id, key_hash, prefix, created_at) "
                "VALUES (gen_random_uuid(), :u, :h, :p, now())"
            ),
            {"u": user_id, "h": hash_api_key(key), "p": key_prefix(key)},
        )
        conn.execute(
            text(f"""
            INSERT INTO generations (id, user_id, status, animal, object_name, faces,
                                     attempts, created_at, updated_at, completed_at)
            SELECT gen_random_uuid(), CAST(:u AS uuid), 'succeeded', 'fox',
                   'avatars/' || :u || '/' || g || '.png',
                   '[{{"box": [10, 20, 100, 120], "confidence": 0.98}}]'::json, 1,
                   t, t, t
            FROM generate_series(1, :rows) AS g,
                 LATERAL (SELECT now() - (g / {TIES}) * interval '1 second' AS t) AS ts
            """),
            {"u": str(user_id), "rows": rows},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE generations"))
    return user_id, key


def cursor_before_page(engine: Engine, user_id: uuid.UUID, page: int) -> str | None:
    """The cursor that opens `page` (1-based), read from the database directly."""
    if page == 1:
        return None
    stmt = (
        select(Generation.created_at, Generation.id)
        .where(Generation.user_id == user_id)
        .order_by(Generation.created_at.desc(), Generation.id.desc())
        .offset(LIMIT * (page - 1) - 1)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).one()
    return encode_cursor(row)


def add_offset_route(app: FastAPI) -> None:
    """The baseline: the same page by LIMIT/OFFSET, with the same auth and serialisation."""

    @app.get("/bench/offset")
    async def offset_page(
        user: CurrentUser,
        session: SessionDep,
        store: StorageDep,
        settings: SettingsDep,
        page: int,
    ) -> Page[GenerationPublic]:
        stmt = (
            select(Generation)
            .where(Generation.user_id == user.id)
            .order_by(Generation.created_at.desc(), Generation.id.desc())
            .offset(LIMIT * (page - 1))
            .limit(LIMIT)
        )
        rows = (await session.execute(stmt)).scalars().all()
        return Page(items=await service.to_public_many(rows, store, settings), next_cursor=None)


Call = Callable[[], Awaitable[httpx.Response]]


async def timed(
    calls: dict[tuple[str, int], Call], repeat: int
) -> dict[tuple[str, int], list[float]]:
    """Milliseconds per call; the cases take turns, so a burst of load hits them alike."""
    for call in calls.values():
        for _ in range(5):
            (await call()).raise_for_status()
    samples: dict[tuple[str, int], list[float]] = {case: [] for case in calls}
    for _ in range(repeat):
        for case, call in calls.items():
            start = time.perf_counter()
            response = await call()
            samples[case].append((time.perf_counter() - start) * 1000)
            assert len(response.json()["items"]) == LIMIT, response.text
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def measure(
    url: str, key: str, cursors: dict[int, str | None], repeat: int
) -> dict[tuple[str, int], list[float]]:
    with tempfile.TemporaryDirectory() as media:
        settings = Settings(database_url=url, storage_dir=Path(media))
        app = create_app(settings)
        add_offset_route(app)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers
            ) as client:
                calls: dict[tuple[str, int], Call] = {}
                for page, cursor in cursors.items():
                    params = {"limit": LIMIT} | ({"cursor": cursor} if cursor else {})
                    calls["keyset", page] = partial(client.get, "/v1/generations", params=params)
                    calls["offset", page] = partial(
                        client.get, "/bench/offset", params={"page": page}
                    )
                results = await timed(calls, repeat)
        return results


def report(rows: int, results: dict[tuple[str, int], list[float]]) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nGET /v1/generations?limit={LIMIT}, {rows:,} rows for one user, PostgreSQL")
    print(
        f"in-process app through httpx.ASGITransport; load average {load} on {os.cpu_count()} CPUs"
    )
    print(f"{'page':>7} {'method':>7} {'median ms':>10} {'p99 ms':>8}")
    pages = sorted({page for _, page in results})
    for page in pages:
        for method in ("keyset", "offset"):
            s = results[method, page]
            print(f"{page:>7} {method:>7} {statistics.median(s):>10.2f} {p99(s):>8.2f}")
    for page in pages:
        k, o = results["keyset", page], results["offset", page]
        ratio = statistics.median(o) / statistics.median(k)
        print(f"page {page}: OFFSET / keyset median = {ratio:.1f}x, p99 = {p99(o) / p99(k):.1f}x")
    deepest = max(p99(results["keyset", page]) for page in pages)
    print(f"keyset p99 at any measured depth: {deepest:.2f} ms (goal <= 10 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=10_000, help="the deep page to time")
    parser.add_argument("--repeat", type=int, default=200, help="timed requests per case")
    args = parser.parse_args()
    deep = max(2, min(args.page, args.rows // LIMIT))
    with private_schema(base_url()) as url:
        engine = create_engine(url)
        started = time.perf_counter()
        user_id, key = seed(engine, args.rows)
        print(
            f"seeded {args.rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        cursors = {1: None, deep: cursor_before_page(engine, user_id, deep)}
        engine.dispose()
        results = asyncio.run(measure(url, key, cursors, args.repeat))
    report(args.rows, results)


if __name__ == "__main__":
    main()
