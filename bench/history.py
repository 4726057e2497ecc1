"""Generation history at depth: keyset pagination against LIMIT/OFFSET on PostgreSQL.

Inserts --rows generations (default 1,000,000) for one user into a schema of its own, then,
through the real app in-process, times GET /v1/generations?limit=50 at page 1 and at a deep page
(10,000 by default) by cursor, beside the same pages served with OFFSET by a bench-only route that
shares everything else (auth, session, serialisation, signed links). Drops the schema at the end.

    .venv/bin/python bench/history.py [--rows 1000000] [--page 10000] [--repeat 1000]
        [--offset-repeat 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from benchdb import private_schema
from fastapi import FastAPI
from sqlalchemy import Engine, Select, create_engine, select, text

from api.config import Settings
from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from api.generations.models import Generation
from api.generations.presenter import to_public_many
from api.generations.schemas import GenerationPublic
from api.main import create_app
from api.pagination import Page, encode_cursor, keyset_page
from api.security import generate_api_key, hash_api_key, key_prefix

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LIMIT = 50
TIES = 10  # rows sharing one created_at, so the id tie-break is exercised too
# One face as the function reports it, stored with every row (the list shows it).
FACES_JSON = json.dumps(
    [
        {
            "box": {"x": 210.0, "y": 120.0, "width": 220.0, "height": 240.0},
            "landmarks": {
                "left_eye": {"x": 360.0, "y": 210.0},
                "right_eye": {"x": 280.0, "y": 210.0},
            },
            "confidence": 0.98,
        }
    ]
)


def base_url() -> str:
    """DATABASE_URL or TEST_DATABASE_URL when they name PostgreSQL, else the local default."""
    for name in ("DATABASE_URL", "TEST_DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith("postgresql"):
            return url
    return DEFAULT_URL


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
                   CAST(:faces AS json), 1,
                   t, t, t
            FROM generate_series(1, :rows) AS g,
                 LATERAL (SELECT now() - (g / {TIES}) * interval '1 second' AS t) AS ts
            """),
            {"u": str(user_id), "rows": rows, "faces": FACES_JSON},
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
        return Page(items=await to_public_many(rows, store, settings), next_cursor=None)


Call = Callable[[], Awaitable[httpx.Response]]
Case = tuple[str, int]


@dataclass
class Samples:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this process only: blind to contention


async def timed(calls: dict[Case, Call], repeats: dict[Case, int]) -> dict[Case, Samples]:
    """Per-call times; the cases take turns, so a burst of load hits them alike."""
    for call in calls.values():
        for _ in range(5):
            (await call()).raise_for_status()
    samples = {case: Samples() for case in calls}
    for turn in range(max(repeats.values())):
        for case, call in calls.items():
            if turn >= repeats[case]:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            response = await call()
            samples[case].cpu_ms.append((time.process_time() - cpu) * 1000)
            samples[case].wall_ms.append((time.perf_counter() - wall) * 1000)
            assert len(response.json()["items"]) == LIMIT, response.text
    return samples


def server_ms(
    engine: Engine, user_id: uuid.UUID, cursor: str | None, page: int
) -> tuple[float, float]:
    """PostgreSQL's own execution time (EXPLAIN ANALYZE, median of 20) of both queries."""
    keyset = keyset_page(
        select(Generation).where(Generation.user_id == user_id),
        Generation.created_at,
        Generation.id,
        cursor=cursor,
        limit=LIMIT,
    )
    offset = (
        select(Generation)
        .where(Generation.user_id == user_id)
        .order_by(Generation.created_at.desc(), Generation.id.desc())
        .offset(LIMIT * (page - 1))
        .limit(LIMIT)
    )
    return _explain_ms(engine, keyset), _explain_ms(engine, offset)


def _explain_ms(engine: Engine, stmt: Select[Any]) -> float:
    compiled = stmt.compile(engine)
    sql = f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"
    times = []
    with engine.connect() as conn:
        for _ in range(20):
            plan = conn.exec_driver_sql(sql, compiled.params).scalar_one()
            times.append(plan[0]["Execution Time"])
    return statistics.median(times)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def measure(
    url: str, key: str, cursors: dict[int, str | None], repeat: int, offset_repeat: int
) -> dict[Case, Samples]:
    """Time both pagination styles at each page through one in-process app."""
    with tempfile.TemporaryDirectory() as media:
        app = create_app(Settings(database_url=url, storage_dir=Path(media)))
        add_offset_route(app)
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers
            ) as client,
        ):
            calls: dict[Case, Call] = {}
            for page, cursor in cursors.items():
                params = {"limit": LIMIT} | ({"cursor": cursor} if cursor else {})
                calls["keyset", page] = partial(client.get, "/v1/generations", params=params)
                calls["offset", page] = partial(client.get, "/bench/offset", params={"page": page})
            repeats = {case: repeat if case[0] == "keyset" else offset_repeat for case in calls}
            return await timed(calls, repeats)


def report(rows: int, results: dict[Case, Samples], server: dict[int, tuple[float, float]]) -> None:
    """The table, the ratios, and the verdict against the goal."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nGET /v1/generations?limit={LIMIT}, {rows:,} rows for one user, PostgreSQL")
    print(f"in-process app via httpx.ASGITransport; load average {load} on {os.cpu_count()} CPUs")
    print(
        f"{'page':>6} {'method':>7} {'n':>5} {'median ms':>10} {'p99 ms':>8} {'CPU ms':>7}"
        f" {'SQL ms':>7}"
    )
    for page in sorted(server):
        for method, sql_ms in zip(("keyset", "offset"), server[page], strict=True):
            wall, cpu = results[method, page].wall_ms, results[method, page].cpu_ms
            median, tail, cpu_ms = statistics.median(wall), p99(wall), statistics.median(cpu)
            print(
                f"{page:>6} {method:>7} {len(wall):>5} {median:>10.2f} {tail:>8.2f}"
                f" {cpu_ms:>7.2f} {sql_ms:>7.3f}"
            )
    for page in sorted(server):
        k, o = results["keyset", page].wall_ms, results["offset", page].wall_ms
        median_x = statistics.median(o) / statistics.median(k)
        sql_x = server[page][1] / server[page][0]
        print(
            f"page {page}: OFFSET / keyset: median {median_x:.1f}x,"
            f" p99 {p99(o) / p99(k):.1f}x, SQL {sql_x:.0f}x"
        )
    worst = max(p99(results["keyset", page].wall_ms) for page in server)
    print(f"keyset p99 at any measured depth: {worst:.2f} ms (goal <= 10 ms)")
    print(
        "median/p99: wall ms per request; CPU: this process's CPU ms per request (median);"
        " SQL: PostgreSQL's own execution ms (EXPLAIN ANALYZE, median of 20)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=10_000, help="the deep page to time")
    # p99 of 1000 keyset requests is the 10th slowest; deep OFFSET pages are slow, so fewer.
    parser.add_argument("--repeat", type=int, default=1000, help="timed keyset requests per page")
    parser.add_argument("--offset-repeat", type=int, default=100, help="timed OFFSET requests")
    args = parser.parse_args()
    deep = max(2, min(args.page, args.rows // LIMIT))
    with private_schema(base_url(), "bench_history") as url:
        engine = create_engine(url)
        started = time.perf_counter()
        user_id, key = seed(engine, args.rows)
        print(
            f"seeded {args.rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        cursors = {1: None, deep: cursor_before_page(engine, user_id, deep)}
        server = {page: server_ms(engine, user_id, c, page) for page, c in cursors.items()}
        engine.dispose()
        results = asyncio.run(measure(url, key, cursors, args.repeat, args.offset_repeat))
    report(args.rows, results, server)


if __name__ == "__main__":
    main()
