"""A migrated database of a benchmark's own: a private PostgreSQL schema, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.config import REPO_ROOT


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest Alembic revision."""
    config = Config(str(REPO_ROOT / "api" / "alembic.ini"))
    config.attributes.update(database_url=url, configure_logger=False)
    command.upgrade(config, "head")


@contextmanager
def private_schema(base_url: str, prefix: str) -> Iterator[str]:
    """A new migrated schema named `{prefix}_<hex>`; yields a URL whose connections use it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        scoped_url = scoped.render_as_string(hide_password=False)
        migrate(scoped_url)
        yield scoped_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
