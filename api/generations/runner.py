"""The in-process work on generations: claim a record, call the function, finish the record.

Every status change goes through api.generations.lifecycle; this module decides when. The
database is the durable state: a pending record keeps its upload until the work finishes it, and
a process that dies mid-way leaves a record that start-up recovery (or the sweep, in another
process) resumes or fails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Row, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.db import utcnow
from api.errors import ApiError
from api.forwarding.client import FunctionRequest, FunctionResult
from api.generations import lifecycle
from api.generations.models import Generation, GenerationInput, GenerationStatus
from api.storage import ObjectStore, delete_generation_objects

logger = logging.getLogger(__name__)

# A record whose work was started this many times without finishing is given up on.
MAX_RUNS = 3
DB_RETRIES = 3
DB_RETRY_DELAY_S = 0.2

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
    """A record to work on, as it was seen (its attempts count guards the claim).

    `retry_later`: a queue will deliver the job again if this attempt fails retryably, so such
    a failure hands the record back to pending instead of failing it; and the queue, not
    MAX_RUNS, counts the attempts.
    """

    generation_id: uuid.UUID
    attempts: int
    retry_later: bool = False


@dataclass(frozen=True)
class Unfinished:
    """An unfinished record as recovery finds it: the job to resume, the record's run, and
    whether it kept its upload (without one there is nothing to resume)."""

    job: Job
    run: int
    kept_input: bool


@dataclass(frozen=True)
class Work:
    """One attempt in hand: what to send the function, and whether the record kept its upload."""

    request: FunctionRequest
    kept_input: bool


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
        self, job: Job, work: Work | None = None, *, claimed: bool = False
    ) -> asyncio.Task[Outcome | None]:
        """Start the work on a record (or return the task already on it).

        `work`: the upload in hand (no read back); `claimed`: the record is already processing
        for this attempt (a sync upload), so the work starts without a claim of its own.
        """
        task = self._tasks.get(job.generation_id)
        if task is None:
            task = asyncio.create_task(
                self._run(job, work, claimed=claimed), name=f"generation-{job.generation_id}"
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

    async def run_delivered(
        self, generation_id: uuid.UUID, *, retry_count: int, max_attempts: int
    ) -> GenerationStatus | None:
        """Run a job a queue delivered (its `retry_count`-th retry) and say how the record stands.

        Finished or gone (None): the queue is done with it. Still unfinished: the queue should
        deliver it again later, as it does when the attempt failed retryably and there are
        attempts left, or when another worker's attempt on it is still fresh.
        """
        seen = await with_db_retry(lambda: self._sighting(generation_id))
        if seen is None or seen.status not in lifecycle.UNFINISHED:
            return seen.status if seen is not None else None
        running = self._tasks.get(generation_id)
        if running is None:
            if retry_count >= max_attempts:
                await with_db_retry(partial(self._fail, generation_id, "upstream_timeout", GAVE_UP))
            elif seen.status is lifecycle.PENDING or self._is_stale(seen.updated_at):
                last = retry_count + 1 >= max_attempts
                running = self.submit(Job(generation_id, seen.attempts, retry_later=not last))
        if running is not None:
            # Shielded: a queue that hangs up (its deadline) does not cancel the work.
            outcome = await asyncio.shield(running)
            if outcome is not None:
                return cast(GenerationStatus, outcome["status"])  # as the work wrote it
        after = await with_db_retry(lambda: self._sighting(generation_id))
        return after.status if after is not None else None

    def _is_stale(self, updated_at: datetime) -> bool:
        return updated_at < utcnow() - timedelta(seconds=self._stale_after_s)

    async def _sighting(
        self, generation_id: uuid.UUID
    ) -> Row[GenerationStatus, int, datetime] | None:
        stmt = select(Generation.status, Generation.attempts, Generation.updated_at).where(
            Generation.id == generation_id
        )
        async with self._session_factory() as session:
            return (await session.execute(stmt)).one_or_none()

    async def _fail(self, generation_id: uuid.UUID, code: str, detail: str) -> None:
        async with self._session_factory() as session, session.begin():
            await lifecycle.fail(session, generation_id, code, detail)

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
        records = await with_db_retry(lambda: self.unfinished(on_start=on_start))
        for record in records:
            if not record.kept_input:
                await with_db_retry(partial(self.abandon, record.job.generation_id))
            elif record.job.generation_id not in self._tasks:
                self.submit(record.job)
        if records:
            logger.info("recovering %d unfinished generations", len(records))
        return len(records)

    async def unfinished(self, *, on_start: bool) -> list[Unfinished]:
        """Unfinished records no worker touched for a stale period, oldest first; at start-up
        (`on_start`), every pending one too."""
        cutoff = utcnow() - timedelta(seconds=self._stale_after_s)
        stale = Generation.updated_at < cutoff
        condition = or_(Generation.status == lifecycle.PENDING, stale) if on_start else stale
        stmt = (
            select(
                Generation.id,
                Generation.attempts,
                Generation.run,
                GenerationInput.generation_id.label("kept"),
            )
            .outerjoin(GenerationInput, GenerationInput.generation_id == Generation.id)
            .where(Generation.status.in_(lifecycle.UNFINISHED), condition)
            .order_by(Generation.updated_at)
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        return [
            Unfinished(Job(row.id, row.attempts), row.run, row.kept is not None) for row in rows
        ]

    async def abandon(self, generation_id: uuid.UUID) -> None:
        """Fail an unfinished record that kept no upload (a sync one whose process died): there
        is nothing to resume, and its client's retry with the same key runs it again."""
        await self._fail(generation_id, "upstream_timeout", INPUT_GONE)

    async def _run(self, job: Job, given: Work | None, *, claimed: bool) -> Outcome | None:
        async with self._semaphore:
            work = given if claimed else None
            try:
                if work is None:
                    work = await with_db_retry(lambda: self._claim(job, given))
                if work is None:
                    return None
                return await self._attempt(job, work)
            except asyncio.CancelledError:
                if work is not None:
                    await asyncio.shield(self._interrupted(job.generation_id, work))
                raise
            except Exception:
                # The record stays unfinished; recovery will try it again.
                logger.exception("generation %s could not be recorded", job.generation_id)
                return None

    async def _attempt(self, job: Job, work: Work) -> Outcome | None:
        """Call the function, finish the record, and drop what no record points to."""
        generation_id = job.generation_id
        outcome = await self._forward(work.request)
        if job.retry_later and _retryable(outcome) and work.kept_input:
            # The queue delivers the job again: back to pending, the upload kept for it.
            await with_db_retry(lambda: self._release(generation_id))
            await self._discard_objects(work.request)
            return None
        final = await with_db_retry(lambda: self._finish(generation_id, outcome, work))
        if not final.keeps_objects:
            # The record failed (a timeout while the function still stored), is gone (deleted
            # while the work ran), or failed before: what the function stored is an orphan.
            await self._discard_objects(work.request)
        return final.values if final.written else None

    async def _forward(self, request: FunctionRequest) -> FunctionResult | ApiError:
        try:
            return await self._forwarder.generate(request)
        except ApiError as error:
            return error
        except Exception:
            logger.exception("generation %s failed unexpectedly", request.generation_id)
            return ApiError("the generation failed unexpectedly")

    async def _finish(
        self, generation_id: uuid.UUID, outcome: FunctionResult | ApiError, work: Work
    ) -> lifecycle.Final:
        async with self._session_factory() as session, session.begin():
            if isinstance(outcome, ApiError):
                return await lifecycle.fail(
                    session, generation_id, outcome.code, outcome.detail, kept_input=work.kept_input
                )
            return await lifecycle.succeed(
                session,
                generation_id,
                object_name=outcome.object_name,
                faces=outcome.faces,
                timings_ms=outcome.timings_ms,
                kept_input=work.kept_input,
            )

    async def _discard_objects(self, request: FunctionRequest) -> None:
        """Delete what the function stored for a record that is gone or failed (best effort)."""
        try:
            await delete_generation_objects(self._store, request.user_id, request.generation_id)
        except Exception:
            logger.exception("the objects of generation %s were not deleted", request.generation_id)

    async def _release(self, generation_id: uuid.UUID) -> None:
        async with self._session_factory() as session, session.begin():
            await lifecycle.release(session, generation_id)

    async def _interrupted(self, generation_id: uuid.UUID, work: Work) -> None:
        """Shutting down mid-attempt: a kept upload goes back to pending, for the next start to
        resume at once; a sync upload, which nothing kept, fails retryably (its client retries
        with the same Idempotency-Key)."""
        if work.kept_input:
            await self._release(generation_id)
            return
        async with self._session_factory() as session, session.begin():
            detail = "the service restarted before the work finished; please try again"
            await lifecycle.fail(
                session, generation_id, "upstream_unavailable", detail, kept_input=False
            )

    async def _claim(self, job: Job, given: Work | None) -> Work | None:
        """Start an attempt on a pending (or stalled) record, loading its upload if not given."""
        async with self._session_factory() as session, session.begin():
            if job.attempts >= MAX_RUNS and not job.retry_later:
                await lifecycle.fail(session, job.generation_id, "upstream_timeout", GAVE_UP)
                return None
            work = given or await _load_work(session, job.generation_id)
            if work is None or not await lifecycle.claim(session, job.generation_id, job.attempts):
                return None
            return work


GAVE_UP = "the work was started several times without finishing; please try again"


def _retryable(outcome: FunctionResult | ApiError) -> bool:
    return isinstance(outcome, ApiError) and outcome.code in lifecycle.RETRYABLE_CODES


INPUT_GONE = "the work was interrupted and its upload is gone; please try again"


async def _load_work(session: AsyncSession, generation_id: uuid.UUID) -> Work | None:
    """The kept upload of an unfinished record; None (and the record failed) when there is none."""
    stmt = (
        select(
            Generation.user_id,
            Generation.animal,
            GenerationInput.image,
            GenerationInput.content_type,
        )
        .outerjoin(GenerationInput, GenerationInput.generation_id == Generation.id)
        .where(Generation.id == generation_id, Generation.status.in_(lifecycle.UNFINISHED))
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None  # finished, or deleted, since it was seen
    if row.image is None:
        # A sync upload (held only by its request) whose process died: nothing to resume.
        await lifecycle.fail(session, generation_id, "upstream_timeout", INPUT_GONE)
        return None
    request = FunctionRequest(
        image=row.image,
        content_type=row.content_type,
        animal=row.animal,
        generation_id=generation_id,
        user_id=row.user_id,
    )
    return Work(request, kept_input=True)
