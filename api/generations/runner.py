"""The generation work: claim a record, call the function, write the outcome; and recovery.

The database is the durable state: a record is `pending` with its upload in `generation_inputs`
until the work claims it (`processing`), and the outcome and the deletion of the upload are one
transaction. A process that dies mid-way leaves a record that start-up recovery resumes or fails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.db import utcnow
from api.errors import ApiError
from api.forwarding.client import FunctionRequest, FunctionResult
from api.generations.models import Generation, GenerationInput, GenerationStatus
from api.storage import ObjectStore, delete_generation_objects

logger = logging.getLogger(__name__)

# A record whose work was started this many times without finishing is given up on.
MAX_RUNS = 3
DB_RETRIES = 3
DB_RETRY_DELAY_S = 0.2
UNFINISHED = (GenerationStatus.pending, GenerationStatus.processing)

T = TypeVar("T")
# The columns a finished generation was given, as written (the caller can answer without a read).
Outcome = dict[str, Any]


class Forwarder(Protocol):
    """What the runner needs of the function client."""

    async def generate(self, request: FunctionRequest) -> FunctionResult: ...

    async def aclose(self) -> None: ...


ForwarderFactory = Callable[[Settings], Forwarder]


@dataclass(frozen=True)
class Job:
    """A record to work on, as its claim saw it."""

    generation_id: uuid.UUID
    attempts: int


async def with_db_retry(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a database operation again when the connection died under it (a restarted server)."""
    for attempt in range(DB_RETRIES):
        try:
            return await operation()
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == DB_RETRIES - 1:
                raise
            logger.warning("database connection lost; retrying (%s)", exc.orig)
            await asyncio.sleep(DB_RETRY_DELAY_S * 2**attempt)
    raise AssertionError("unreachable")


class GenerationRunner:
    """Runs generations as tracked asyncio tasks, at most `max_concurrency` at once."""

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        forwarder: Forwarder,
        store: ObjectStore,
        *,
        max_concurrency: int,
        stale_after_s: float,
    ) -> None:
        # A factory, not a sessionmaker: tests swap the app's sessionmaker after start-up.
        self._session_factory = session_factory
        self._forwarder = forwarder
        self._store = store
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._stale_after_s = stale_after_s
        self._tasks: dict[uuid.UUID, asyncio.Task[Outcome | None]] = {}

    def submit(
        self, job: Job, request: FunctionRequest | None = None, *, claimed: bool = False
    ) -> asyncio.Task[Outcome | None]:
        """Start the work on a record (or return the task already on it).

        `claimed`: the caller inserted the record as processing with `request` as its input.
        """
        task = self._tasks.get(job.generation_id)
        if task is None:
            task = asyncio.create_task(
                self._run(job, request, claimed=claimed), name=f"generation-{job.generation_id}"
            )
            self._tasks[job.generation_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(job.generation_id, None))
        return task

    def task_for(self, generation_id: uuid.UUID) -> asyncio.Task[Outcome | None] | None:
        """The task working on a record in this process, if any."""
        return self._tasks.get(generation_id)

    async def shutdown(self, grace_s: float) -> None:
        """Let running work finish for `grace_s`, then cancel it (recovery picks it up later)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def sweep_forever(self) -> None:
        """Every half stale period, resume or fail work that stalled (another process died)."""
        while True:
            await asyncio.sleep(self._stale_after_s / 2)
            try:
                await self.recover(on_start=False)
            except Exception:
                logger.exception("the sweep for stalled generations failed")

    async def recover(self, *, on_start: bool) -> int:
        """Resume (or fail) unfinished records: all pending ones at start-up, and stale ones."""
        jobs = await with_db_retry(lambda: self._unfinished(on_start=on_start))
        for job in jobs:
            if job.generation_id not in self._tasks:
                self.submit(job)
        if jobs:
            logger.info("recovering %d unfinished generations", len(jobs))
        return len(jobs)

    async def _unfinished(self, *, on_start: bool) -> list[Job]:
        cutoff = utcnow() - timedelta(seconds=self._stale_after_s)
        stale = Generation.updated_at < cutoff
        condition = or_(Generation.status == GenerationStatus.pending, stale) if on_start else stale
        stmt = select(Generation.id, Generation.attempts).where(
            Generation.status.in_(UNFINISHED), condition
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        return [Job(row.id, row.attempts) for row in rows]

    async def _run(
        self, job: Job, request: FunctionRequest | None, *, claimed: bool
    ) -> Outcome | None:
        async with self._semaphore:
            work: FunctionRequest | None = request if claimed else None
            try:
                if work is None:
                    work = await with_db_retry(lambda: self._claim(job, request))
                if work is None:
                    return None
                outcome = await self._forward(work)
                written = await with_db_retry(lambda: self._finish(job.generation_id, outcome))
                if written is None or isinstance(outcome, ApiError):
                    await self._discard_objects(work)
                return written
            except asyncio.CancelledError:
                if work is not None:
                    # Shutting down: hand the record back so the next start resumes it at once.
                    await asyncio.shield(self._release(job.generation_id))
                raise
            except Exception:
                # The record stays unfinished with its upload; recovery will try it again.
                logger.exception("generation %s could not be recorded", job.generation_id)
                return None

    async def _discard_objects(self, request: FunctionRequest) -> None:
        """Delete what the function stored for a record that is gone or failed (best effort).

        A record deleted while its work ran, or failed on a timeout while the function still
        finished, would otherwise leave an image nothing points to.
        """
        try:
            await delete_generation_objects(self._store, request.user_id, request.generation_id)
        except Exception:
            logger.exception("the objects of generation %s were not deleted", request.generation_id)

    async def _release(self, generation_id: uuid.UUID) -> None:
        async with self._session_factory() as session, session.begin():
            await session.execute(
                update(Generation)
                .where(
                    Generation.id == generation_id,
                    Generation.status == GenerationStatus.processing,
                )
                .values(status=GenerationStatus.pending, updated_at=utcnow())
            )

    async def _forward(self, request: FunctionRequest) -> FunctionResult | ApiError:
        try:
            return await self._forwarder.generate(request)
        except ApiError as error:
            return error
        except Exception:
            logger.exception("generation %s failed unexpectedly", request.generation_id)
            return ApiError("the generation failed unexpectedly")

    async def _claim(self, job: Job, request: FunctionRequest | None) -> FunctionRequest | None:
        """Mark the record processing if nobody else did since `job` was read; load its upload."""
        async with self._session_factory() as session, session.begin():
            if request is None:
                request = await self._load_request(session, job)
                if request is None:
                    return None
            if job.attempts >= MAX_RUNS:
                await _fail(session, job.generation_id, "upstream_timeout", "gave up after retries")
                return None
            claimed = await session.execute(
                update(Generation)
                .where(
                    Generation.id == job.generation_id,
                    Generation.attempts == job.attempts,
                    Generation.status.in_(UNFINISHED),
                )
                .values(
                    status=GenerationStatus.processing,
                    attempts=job.attempts + 1,
                    updated_at=utcnow(),
                )
            )
            return request if claimed.rowcount == 1 else None  # type: ignore[attr-defined]

    async def _load_request(self, session: AsyncSession, job: Job) -> FunctionRequest | None:
        stmt = (
            select(Generation, GenerationInput)
            .outerjoin(GenerationInput, GenerationInput.generation_id == Generation.id)
            .where(Generation.id == job.generation_id, Generation.status.in_(UNFINISHED))
        )
        row = (await session.execute(stmt)).one_or_none()
        if row is None:
            return None
        generation, upload = row
        if upload is None:
            detail = "the work was interrupted and its upload is gone; please try again"
            await _fail(session, job.generation_id, "upstream_timeout", detail)
            return None
        return FunctionRequest(
            image=upload.image,
            content_type=upload.content_type,
            animal=generation.animal,
            generation_id=generation.id,
            user_id=generation.user_id,
        )

    async def _finish(
        self, generation_id: uuid.UUID, outcome: FunctionResult | ApiError
    ) -> Outcome | None:
        """Write the outcome; None when the record is gone (deleted while the work ran)."""
        async with self._session_factory() as session, session.begin():
            if isinstance(outcome, ApiError):
                return await _fail(session, generation_id, outcome.code, outcome.detail)
            now = utcnow()
            values: Outcome = {
                "status": GenerationStatus.succeeded,
                "object_name": outcome.object_name,
                "faces": outcome.faces,
                "timings_ms": outcome.timings_ms,
                "error_code": None,
                "error_detail": None,
                "updated_at": now,
                "completed_at": now,
            }
            return values if await _write(session, generation_id, values) else None


async def _fail(
    session: AsyncSession, generation_id: uuid.UUID, code: str, detail: str
) -> Outcome | None:
    now = utcnow()
    values: Outcome = {
        "status": GenerationStatus.failed,
        "error_code": code,
        "error_detail": detail,
        "updated_at": now,
        "completed_at": now,
    }
    return values if await _write(session, generation_id, values) else None


GENERATIONS = cast(Table, Generation.__table__)
INPUTS = cast(Table, GenerationInput.__table__)
# Core statements built once (every generation runs them): the SET clause comes from the
# values' keys, so one statement serves success and failure.
FINISH_GENERATION = update(GENERATIONS).where(GENERATIONS.c.id == bindparam("generation_id"))
DELETE_INPUT = delete(INPUTS).where(INPUTS.c.generation_id == bindparam("generation_id"))


async def _write(session: AsyncSession, generation_id: uuid.UUID, values: Outcome) -> bool:
    """Finish the record; False when there is none any more (deleted while the work ran)."""
    connection = await session.connection()
    result = await connection.execute(FINISH_GENERATION, {"generation_id": generation_id, **values})
    # The selfie is kept only while the work needs it.
    await connection.execute(DELETE_INPUT, {"generation_id": generation_id})
    return bool(result.rowcount)
