"""Helpers for the API's tests (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import REPO_ROOT
from api.generations.models import Generation, GenerationStatus

MAIN_PY = REPO_ROOT / "cloud_functions" / "main.py"

ADMIN_KEY = "test-admin-key-" + "x" * 32
MEDIA_KEY = "test-media-signing-key-" + "y" * 32
WEBHOOK_KEY = "test-webhook-encryption-key-" + "z" * 32
# Nothing listens on the discard port: the function is "down" unless a test says otherwise.
UNREACHABLE_URL = "http://127.0.0.1:9"
BASE_URL = "http://testserver"


@asynccontextmanager
async def client_for(app: FastAPI, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that calls the app in-process."""
    transport = httpx.ASGITransport(app=app, **kwargs)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def create_user(
    client: httpx.AsyncClient, username: str | None = None, email: str | None = None
) -> tuple[dict[str, Any], str]:
    """Sign a user up through the API; returns (the user's JSON, their API key)."""
    username = username or f"user{uuid.uuid4().hex[:10]}"
    email = email or f"{username}@example.com"
    response = await client.post("/v1/users", json={"username": username, "email": email})
    assert response.status_code == 201, response.text
    body = response.json()
    return body, body.pop("api_key")


def auth(key: str) -> dict[str, str]:
    """The Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}


async def add_generation(
    session: AsyncSession, user_id: str | uuid.UUID, **fields: Any
) -> Generation:
    """Insert a generation row directly (committed to the test's savepoint)."""
    values: dict[str, Any] = {"animal": "cat", "status": GenerationStatus.pending} | fields
    generation = Generation(user_id=uuid.UUID(str(user_id)), **values)
    session.add(generation)
    await session.commit()
    return generation


def alembic_config(database_url: str) -> Config:
    """Alembic's config for the API, pointed at one database."""
    config = Config(str(REPO_ROOT / "api" / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def run_alembic(database_url: str, action: str, revision: str) -> None:
    """`alembic upgrade|downgrade <revision>`, in a thread: its env.py runs an event loop."""
    fn = command.upgrade if action == "upgrade" else command.downgrade
    with ThreadPoolExecutor(1) as pool:
        pool.submit(fn, alembic_config(database_url), revision).result()


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A new, empty schema; yields a URL whose connections use it; drops it at the end."""
    schema = f"test_api_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def empty_database(tmp_dir: Path) -> Iterator[str]:
    """The URL of a new, empty database: a PostgreSQL schema or a SQLite file."""
    base_url = os.environ.get("TEST_DATABASE_URL", "")
    if base_url.startswith("postgresql"):
        with postgres_schema(base_url) as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_dir / f'{uuid.uuid4().hex}.db'}"


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    """The response is RFC 9457 problem+json with this status and SPEC code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()


def put_object(store: Any, name: str, data: bytes) -> None:
    """Write an object into a local store's folder, as the function's local store does."""
    path = store.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def photo(name: str) -> bytes:
    """An offline photograph from scikit-image, as a JPEG."""
    import io

    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def stored_files(root: Path) -> list[Path]:
    """Every file under a store's folder, sorted (none when it does not exist)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
