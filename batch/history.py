"""`--user-id`: every result also becomes a generation in that user's history, through the
API's own models and lifecycle (the one module that writes a record's status).

The records are born finished: the job made the images itself (or had the function make them),
stored under `avatars/{user_id}/{generation_id}.{ext}` in the store the API reads, so the
history lists them, `image_url` links them, and erasing the user removes them, as for uploads.
A record's id is derived from its output (batch.work.Spec.generation_id), so running a line
again never records it twice. Rate limits do not apply: the job is the operator's.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from api.config import Settings as ApiSettings
from api.db import build_engine, build_sessionmaker
from api.generations import lifecycle
from api.users.models import User
from batch.errors import BatchError
from batch.work import Result


def database_url() -> str:
    """The API's database: DATABASE_URL, or the API's own default (the embedded SQLite)."""
    default = ApiSettings.model_fields["database_url"].default
    return os.environ.get("DATABASE_URL") or str(default)


class History:
    """Records results for one user; the job's main thread is its only caller."""

    def __init__(self, user_id: uuid.UUID, url: str | None = None, *, style: str) -> None:
        self.user_id = user_id
        self.style = style  # the job's: every record it writes was drawn in it
        self._loop = asyncio.Runner()
        self._engine = build_engine(url or database_url(), pool_size=1)
        self._sessions = build_sessionmaker(self._engine)

    def check(self) -> None:
        """BatchError unless the database is reachable and the user exists."""
        self._loop.run(self._check())

    def record(self, results: Sequence[Result]) -> int:
        """Write the results' records (one transaction); how many were new or redone."""
        if not results:
            return 0
        return self._loop.run(self._record(results))

    def close(self) -> None:
        self._loop.run(self._engine.dispose())
        self._loop.close()

    async def _check(self) -> None:
        try:
            async with self._sessions() as session:
                user = await session.get(User, self.user_id)
        except (SQLAlchemyError, OSError) as exc:
            msg = f"cannot read the API's database ({type(exc).__name__}): check DATABASE_URL"
            raise BatchError(msg) from exc
        if user is None:
            raise BatchError(f"no user {self.user_id} in the API's database (--user-id)")

    async def _record(self, results: Sequence[Result]) -> int:
        written = 0
        try:
            async with self._sessions.begin() as session:
                for result in results:
                    assert result.generation_id is not None, "Spec names every recorded result"
                    generation = lifecycle.born_finished(
                        self.user_id,
                        uuid.UUID(result.generation_id),
                        result.animal,
                        style=self.style,
                        object_name=result.object_name,
                        faces=result.faces,
                        timings_ms=result.timings_ms,
                        error=result.error,
                    )
                    written += await lifecycle.insert_finished(session, generation)
        except IntegrityError as exc:  # the user's row went away under the job
            msg = f"user {self.user_id} was erased while the job ran; stopped"
            raise BatchError(msg) from exc
        except (SQLAlchemyError, OSError) as exc:
            raise BatchError(f"cannot write to the API's database: {type(exc).__name__}") from exc
        return written
