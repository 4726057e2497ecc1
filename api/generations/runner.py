"""The in-process work on generations: claim records, call the function, finish the records.

A job is one upload and one call to the function: a single generation, or the unfinished
generations of a pack (one upload, several animals, the face found once). Every status change
goes through api.generations.lifecycle; this module decides when. The database is the durable
state: a pending record keeps its upload (a pack's generations share one) until the work
finishes it, and a process that dies mid-way leaves records that start-up recovery (or the
sweep, in another process) resumes or fails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import Row, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.db import utcnow
from api.errors import ApiError
from api.forwarding.client import (
    IN_FLIGHT,
    FunctionRequest,
    FunctionResult,
    ResultExists,
    Stored,
    Target,
)
from api.generations import lifecycle
from api.generations.models import Generation, GenerationInput, GenerationStatus, Pack, PackInput
from api.observability import tracing
from api.observability.metrics import Metrics
from api.storage import ObjectStore, delete_generation_objects

logger = logging.getLogger(__name__)

# A record whose work was started this many times without finishing is given up on.
MAX_RUNS = 3
DB_RETRIES = 3
DB_RETRY_DELAY_S = 0.2

T = TypeVar("T")
# The columns each finished generation was given, as written (callers answer without a read).
Outcome = dict[uuid.UUID, dict[str, Any]]
# Generations whose stored objects are orphans, each with the run that failed it (None: the
# record is gone); a later retry's result must not be taken for one.
Orphans = dict[uuid.UUID, int | None]
# What a job works on: one generation, or a pack's generations.
WorkKind = Literal["generation", "pack"]


class Forwarder(Protocol):
    """What the runner needs of the function client."""

    async def generate(self, request: FunctionRequest) -> FunctionResult: ...

    async def aclose(self) -> None: ...


ForwarderFactory = Callable[[Settings], Forwarder]
# Takes completion events (webhook deliveries) once the transaction that wrote them committed.
EventSink = Callable[[Sequence[uuid.UUID]], Awaitable[None]]


@dataclass(frozen=True)
class Member:
    """A generation of a job, with its attempts as they were seen (that guards its claim)."""

    generation_id: uuid.UUID
    attempts: int


@dataclass(frozen=True)
class Job:
    """A unit of work: `id` is the generation's (kind `generation`) or the pack's (kind
    `pack`); `members` the generations to work on, as seen.

    `retry_later`: a queue will deliver the job again if this attempt fails retryably, so such
    a failure hands the records back to pending instead of failing them; and the queue, not
    MAX_RUNS, counts the attempts.
    """

    kind: WorkKind
    id: uuid.UUID
    members: tuple[Member, ...]
    retry_later: bool = False

    def kept(self, kept_input: bool = True) -> lifecycle.Kept:
        """Where the job's upload waits when `kept_input`: a generation's own row, or its
        pack's (shared by the pack's generations)."""
        if not kept_input:
            return lifecycle.NO_INPUT
        return lifecycle.OWN_INPUT if self.kind == "generation" else lifecycle.Kept(pack_id=self.id)

    @classmethod
    def of_generation(cls, generation_id: uuid.UUID, attempts: int) -> Job:
        return cls("generation", generation_id, (Member(generation_id, attempts),))

    @classmethod
    def fresh(cls, kind: WorkKind, job_id: uuid.UUID, generation_ids: Iterable[uuid.UUID]) -> Job:
        """A job on records just written pending (no attempt yet)."""
        return cls(kind, job_id, tuple(Member(gid, 0) for gid in generation_ids))


@dataclass(frozen=True)
class Unfinished:
    """Unfinished work as recovery finds it: the job to resume, its run, whether its upload
    was kept (without one there is nothing to resume), and whether a process left it
    `processing` (it stopped mid-work: no heartbeat) rather than pending."""

    job: Job
    run: int
    kept_input: bool
    stalled: bool = False


@dataclass(frozen=True)
class Work:
    """One attempt in hand: what to send the function, and whether the upload was kept."""

    request: FunctionRequest
    kept_input: bool

    def only(self, generation_ids: Iterable[uuid.UUID]) -> Work:
        """The same work for some of its generations (those this attempt claimed)."""
        wanted = set(generation_ids)
        targets = tuple(t for t in self.request.targets if t.generation_id in wanted)
        return replace(self, request=replace(self.request, targets=targets))


# (id, status, attempts, updated_at) of a generation, as a sighting reads it.
SightedRow = Row[uuid.UUID, GenerationStatus, int, datetime]


@dataclass(frozen=True)
class Sighting:
    """How a job's records stand: (id, status, attempts, updated_at) of each generation."""

    kind: WorkKind
    id: uuid.UUID
    rows: Sequence[SightedRow]

    @property
    def unfinished(self) -> list[SightedRow]:
        return [row for row in self.rows if row.status in lifecycle.UNFINISHED]

    @property
    def status(self) -> str | None:
        """The generation's status, or the pack's derived one; None when it is gone."""
        if not self.rows:
            return None
        return lifecycle.overall_status([row.status for row in self.rows])

    def job(self, *, retry_later: bool = False) -> Job:
        """The job on the unfinished generations, as seen."""
        members = tuple(Member(row.id, row.attempts) for row in self.unfinished)
        return Job(self.kind, self.id, members, retry_later=retry_later)


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
    """Runs jobs as tracked asyncio tasks, at most `max_concurrency` at once."""

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        forwarder: Forwarder,
        store: ObjectStore,
        *,
        max_concurrency: int,
        stale_after_s: float,
        late_write_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        """`stale_after_s`: unfinished work nobody touched this long is taken over (a worker
        beats every third of it while it works); `late_write_s`: after giving up on the function
        without its answer, its objects are looked for once more this long after."""
        # A factory, not a sessionmaker: tests swap the app's sessionmaker after start-up.
        self._session_factory = session_factory
        self._forwarder = forwarder
        self._store = store
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._stale_after_s = stale_after_s
        self._late_write_s = late_write_s
        self._tasks: dict[uuid.UUID, asyncio.Task[Outcome | None]] = {}
        # The generations this process is working on, kept fresh by the heartbeat.
        self._held: set[uuid.UUID] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        # Second clean-ups waiting for a result the function may still store.
        self._late_sweeps: dict[asyncio.Task[None], tuple[uuid.UUID, Orphans]] = {}
        # Set by the app once the work queue exists (api.work.announce).
        self.on_events: EventSink | None = None
        self._metrics = metrics or Metrics.create(enabled=False)

    async def announce(self, finals: Iterable[lifecycle.Final]) -> None:
        """Count committed finishes, and hand their completion events to the queue (best
        effort: an event not taken waits in the database for the sweep)."""
        finals = list(finals)
        self._count(finals)
        events = [final.event for final in finals if final.event is not None]
        if events and self.on_events is not None:
            try:
                await self.on_events(events)
            except Exception:
                logger.exception("completion events %s were not handed on", events)

    def _count(self, finals: Sequence[lifecycle.Final]) -> None:
        """The finishes written (a record finished by another worker is theirs to count)."""
        now = utcnow()
        for final in finals:
            if not final.written or final.status is None or final.animal is None:
                continue
            seconds = None
            if final.created_at is not None:
                seconds = (now - final.created_at).total_seconds()
            self._metrics.generation_finished(
                animal=final.animal,
                status=final.status.value,
                code=final.values.get("error_code"),
                kind="pack" if final.in_pack else "generation",
                seconds=seconds,
            )
            if final.pack_status is not None:
                self._metrics.pack_finished(final.pack_status)

    def submit(
        self, job: Job, work: Work | None = None, *, claimed: bool = False
    ) -> asyncio.Task[Outcome | None]:
        """Start the work on a job (or return the task already on it).

        `work`: the upload in hand (no read back); `claimed`: the records are already processing
        for this attempt (a sync upload), so the work starts without a claim of its own.
        """
        task = self._tasks.get(job.id)
        if task is None:
            task = asyncio.create_task(
                self._run(job, work, claimed=claimed), name=f"{job.kind}-{job.id}"
            )
            self._tasks[job.id] = task
            task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return task

    def task_for(self, job_id: uuid.UUID) -> asyncio.Task[Outcome | None] | None:
        """The task working on a generation or pack in this process, if any."""
        return self._tasks.get(job_id)

    async def shutdown(self, grace_s: float) -> None:
        """Let running work finish for `grace_s`, then cancel it (recovery picks it up later);
        second clean-ups still waiting run now (a write later than that stays until the user
        erases their data)."""
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        late = dict(self._late_sweeps)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for user_id, runs in late.values():
            await self._discard_orphans(user_id, runs)

    def _hold(self, generation_ids: Iterable[uuid.UUID]) -> None:
        """Keep these records fresh while this process works on them, so that a sweep takes over
        only the work of a process that stopped (its records stop being touched)."""
        self._held.update(generation_ids)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat_forever(), name="heartbeat")

    async def _beat_forever(self) -> None:
        """Every third of the stale period, touch the records this process is working on."""
        while True:
            await asyncio.sleep(self._stale_after_s / 3)
            held = list(self._held)
            if not held:
                continue
            try:
                await self._touch(held)
            except Exception:
                logger.exception("the heartbeat of %d generations failed", len(held))

    async def _touch(self, generation_ids: Sequence[uuid.UUID]) -> None:
        async with self._session_factory() as session, session.begin():
            await lifecycle.touch(session, generation_ids)

    async def run_delivered(
        self, kind: WorkKind, job_id: uuid.UUID, *, retry_count: int, max_attempts: int
    ) -> str | None:
        """Run a job a queue delivered (its `retry_count`-th retry) and say how it stands: the
        generation's status or the pack's.

        Finished or gone (None): the queue is done with it. Still unfinished: the queue should
        deliver it again later, as it does when the attempt failed retryably and there are
        attempts left, or when another worker's attempt on it is still fresh.
        """
        seen = await with_db_retry(partial(self.sight, kind, job_id))
        if not seen.unfinished:
            return seen.status
        running = self._tasks.get(job_id)
        if running is None:
            if retry_count >= max_attempts:
                await with_db_retry(partial(self._fail, seen.job(), "upstream_timeout", GAVE_UP))
            elif self._is_due(seen.unfinished):
                last = retry_count + 1 >= max_attempts
                running = self.submit(seen.job(retry_later=not last))
        if running is not None:
            # Shielded: a queue that hangs up (its deadline) does not cancel the work.
            outcome = await asyncio.shield(running)
            if kind == "generation" and outcome and job_id in outcome:
                return str(outcome[job_id]["status"])  # as the work wrote it
        after = await with_db_retry(partial(self.sight, kind, job_id))
        return after.status

    def _is_due(self, unfinished: Sequence[SightedRow]) -> bool:
        """Whether unfinished records wait for work: pending, or nobody touched them lately."""
        if any(row.status is lifecycle.PENDING for row in unfinished):
            return True
        cutoff = utcnow() - timedelta(seconds=self._stale_after_s)
        return all(row.updated_at < cutoff for row in unfinished)

    async def sight(self, kind: WorkKind, job_id: uuid.UUID) -> Sighting:
        """How a generation, or a pack's generations, stand now."""
        column = Generation.id if kind == "generation" else Generation.pack_id
        stmt = select(
            Generation.id, Generation.status, Generation.attempts, Generation.updated_at
        ).where(column == job_id)
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        return Sighting(kind, job_id, rows)

    async def sweep_forever(self) -> None:
        """Every half stale period, resume or fail work that stalled (another process died)."""
        while True:
            await asyncio.sleep(self._stale_after_s / 2)
            try:
                await self.recover(on_start=False)
            except Exception:
                logger.exception("the sweep for stalled generations failed")

    async def recover(self, *, on_start: bool) -> int:
        """Resume (or fail) unfinished work: all pending at start-up, and stale."""
        found = await with_db_retry(lambda: self.unfinished(on_start=on_start))
        for unfinished in found:
            job = unfinished.job
            if not unfinished.kept_input:
                logger.warning(
                    "%s %s was left unfinished by a process that stopped, and its upload was not "
                    "kept (a sync upload): failing it retryably",
                    job.kind,
                    job.id,
                )
                await with_db_retry(partial(self.abandon, job))
            elif job.id not in self._tasks:
                if unfinished.stalled:
                    logger.warning(
                        "%s %s was left unfinished by a process that stopped (nothing touched it "
                        "for %.0f s): resuming it",
                        job.kind,
                        job.id,
                        self._stale_after_s,
                    )
                self.submit(job)
        if found:
            logger.info("recovering %d unfinished generations or packs", len(found))
        return len(found)

    async def unfinished(self, *, on_start: bool) -> list[Unfinished]:
        """Unfinished work no worker touched for a stale period, oldest first, a pack's
        generations together; at start-up (`on_start`), every pending record too."""
        cutoff = utcnow() - timedelta(seconds=self._stale_after_s)
        stale = Generation.updated_at < cutoff
        condition = or_(Generation.status == lifecycle.PENDING, stale) if on_start else stale
        stmt = (
            select(
                Generation.id,
                Generation.status,
                Generation.attempts,
                Generation.run,
                Generation.pack_id,
                Pack.run.label("pack_run"),
                GenerationInput.generation_id.label("kept"),
                PackInput.pack_id.label("pack_kept"),
            )
            .outerjoin(GenerationInput, GenerationInput.generation_id == Generation.id)
            .outerjoin(Pack, Pack.id == Generation.pack_id)
            .outerjoin(PackInput, PackInput.pack_id == Generation.pack_id)
            .where(Generation.status.in_(lifecycle.UNFINISHED), condition)
            .order_by(Generation.updated_at)
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        found: dict[uuid.UUID, Unfinished] = {}
        for row in rows:
            member = Member(row.id, row.attempts)
            stalled = row.status is lifecycle.PROCESSING
            if row.pack_id is None:
                job = Job("generation", row.id, (member,))
                found[row.id] = Unfinished(job, row.run, row.kept is not None, stalled)
            elif (seen := found.get(row.pack_id)) is not None:
                job = replace(seen.job, members=(*seen.job.members, member))
                found[row.pack_id] = replace(seen, job=job, stalled=seen.stalled or stalled)
            else:
                job = Job("pack", row.pack_id, (member,))
                kept = row.pack_kept is not None
                found[row.pack_id] = Unfinished(job, row.pack_run, kept, stalled)
        return list(found.values())

    async def abandon(self, job: Job) -> None:
        """Fail unfinished records that kept no upload (a sync one whose process died): there
        is nothing to resume, and its client's retry with the same key runs it again."""
        await self._fail(job, "upstream_timeout", INPUT_GONE)

    async def _fail(self, job: Job, code: str, detail: str, *, kept_input: bool = True) -> None:
        """Fail a job's records without an answer of the function; what an earlier attempt of
        theirs may have stored is an orphan."""
        finals = {}
        async with self._session_factory() as session, session.begin():
            for member in job.members:
                finals[member.generation_id] = await lifecycle.fail(
                    session, member.generation_id, code, detail, kept=job.kept(kept_input)
                )
        await self.announce(finals.values())
        await self._discard_failed(finals)

    async def _discard_failed(self, finals: dict[uuid.UUID, lifecycle.Final]) -> None:
        """Delete what earlier attempts may have stored for records failed here without an
        answer of the function (given up on, or abandoned)."""
        for generation_id, final in finals.items():
            if final.user_id is not None:  # written here (a record gone has no owner to ask)
                await self._discard_objects(final.user_id, [generation_id])

    async def _run(self, job: Job, given: Work | None, *, claimed: bool) -> Outcome | None:
        # Under the trace of the request that started it; recovery's work starts its own.
        tracing.ensure()
        async with self._semaphore:
            work = given if claimed else None
            try:
                if work is None:
                    work = await with_db_retry(lambda: self._claim(job, given))
                if work is None:
                    return None
                self._hold(work.request.generation_ids)
                return await self._attempt(job, work)
            except asyncio.CancelledError:
                if work is not None:
                    await asyncio.shield(self._interrupted(job, work))
                raise
            except Exception:
                # The records stay unfinished; recovery will try them again.
                logger.exception("%s %s could not be recorded", job.kind, job.id)
                return None
            finally:
                if work is not None:
                    self._held.difference_update(work.request.generation_ids)

    async def _attempt(self, job: Job, work: Work) -> Outcome | None:
        """Call the function, finish the records, and drop what no record points to."""
        outcome = await self._forward_fresh(work)
        ids = work.request.generation_ids
        if job.retry_later and work.kept_input:
            # The queue delivers the job again: those that failed retryably go back to pending,
            # the upload kept for them; the others finish now.
            again = [gid for gid in ids if _retryable(_outcome_for(outcome, gid))]
            if again:
                await with_db_retry(lambda: self._release(again))
                await self._discard_objects(work.request.user_id, again)
                ids = tuple(gid for gid in ids if gid not in again)
                if not ids:
                    return None
        finals = await with_db_retry(lambda: self._finish(job, outcome, work, ids))
        await self.announce(finals.values())
        # Failed (a timeout while the function still stored), gone (deleted while the work ran),
        # or failed before: what the function stored for those is an orphan.
        orphans = [gid for gid, final in finals.items() if not final.keeps_objects]
        await self._discard_objects(work.request.user_id, orphans)
        # Given up on without the function's answer (the whole call's, or a re-ask's for some
        # of a pack's): it may still be storing. It stores nothing after the deadline it was
        # sent, but a store begun just before may land after this.
        late = {
            gid: finals[gid].run
            for gid in orphans
            if isinstance(_outcome_for(outcome, gid), IN_FLIGHT)
            and (finals[gid].written or finals[gid].status is None)  # failed here, or gone
        }
        if late:
            self._sweep_later(work.request.user_id, late)
        written = {gid: final.values for gid, final in finals.items() if final.written}
        return written or None

    async def _forward_fresh(self, work: Work) -> FunctionResult | ApiError:
        """Call the function; where it found a result already stored (an earlier attempt's, not
        recorded: an orphan), drop that and ask once more for those generations."""
        outcome = await self._forward(work.request)
        taken = [
            gid
            for gid in work.request.generation_ids
            if isinstance(_outcome_for(outcome, gid), ResultExists)
        ]
        if not taken:
            return outcome
        logger.warning("generations %s found an earlier attempt's result: replacing it", taken)
        await self._discard_objects(work.request.user_id, taken)
        again = await self._forward(work.only(taken).request)
        if isinstance(outcome, ApiError):  # the whole request was refused: all were taken
            return again
        merged = {gid: _outcome_for(again, gid) for gid in taken}
        return replace(outcome, outcomes={**outcome.outcomes, **merged})

    def _sweep_later(self, user_id: uuid.UUID, runs: Orphans) -> None:
        """Delete the generations' objects again once a late store would have landed, for those
        still orphans then: failed in the same run (`runs`; no retry since) or gone (None)."""

        async def sweep() -> None:
            await asyncio.sleep(self._late_write_s)
            await self._discard_orphans(user_id, runs)

        task = asyncio.create_task(sweep(), name=f"late-sweep-{next(iter(runs))}")
        self._late_sweeps[task] = (user_id, runs)
        task.add_done_callback(self._late_sweeps.pop)

    async def _discard_orphans(self, user_id: uuid.UUID, runs: Orphans) -> None:
        """Delete the objects of generations that are still orphans, each held so (no retry can
        start) until its objects are gone."""
        for generation_id, run in runs.items():
            try:
                async with self._session_factory() as session, session.begin():
                    if await lifecycle.still_orphaned(session, generation_id, run):
                        await delete_generation_objects(self._store, user_id, generation_id)
            except Exception:
                logger.exception(
                    "the late objects of generation %s were not deleted", generation_id
                )

    async def _forward(self, request: FunctionRequest) -> FunctionResult | ApiError:
        try:
            return await self._forwarder.generate(request)
        except ApiError as error:
            return error
        except Exception:
            logger.exception("generations %s failed unexpectedly", list(request.generation_ids))
            return ApiError("the generation failed unexpectedly")

    async def _finish(
        self,
        job: Job,
        outcome: FunctionResult | ApiError,
        work: Work,
        generation_ids: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, lifecycle.Final]:
        """Record each generation's result in one transaction."""
        kept = job.kept(work.kept_input)
        finals: dict[uuid.UUID, lifecycle.Final] = {}
        async with self._session_factory() as session, session.begin():
            for gid in generation_ids:
                result = _outcome_for(outcome, gid)
                if isinstance(result, ApiError):
                    finals[gid] = await lifecycle.fail(
                        session, gid, result.code, result.detail, kept=kept
                    )
                    continue
                assert isinstance(outcome, FunctionResult)
                finals[gid] = await lifecycle.succeed(
                    session,
                    gid,
                    object_name=result.object_name,
                    faces=outcome.faces,
                    timings_ms=result.timings_ms,
                    kept=kept,
                )
        return finals

    async def _discard_objects(
        self, user_id: uuid.UUID, generation_ids: Iterable[uuid.UUID]
    ) -> None:
        """Delete what the function stored for records that are gone or failed (best effort)."""
        for generation_id in generation_ids:
            try:
                await delete_generation_objects(self._store, user_id, generation_id)
            except Exception:
                logger.exception("the objects of generation %s were not deleted", generation_id)

    async def _release(self, generation_ids: Iterable[uuid.UUID]) -> None:
        async with self._session_factory() as session, session.begin():
            for generation_id in generation_ids:
                await lifecycle.release(session, generation_id)

    async def _interrupted(self, job: Job, work: Work) -> None:
        """Shutting down mid-attempt: a kept upload's records go back to pending, for the next
        start to resume at once; a sync upload's, which nothing kept, fail retryably (the
        client retries with the same Idempotency-Key)."""
        ids = work.request.generation_ids
        if work.kept_input:
            await self._release(ids)
            return
        detail = "the service restarted before the work finished; please try again"
        await self._fail(
            Job.fresh(job.kind, job.id, ids), "upstream_unavailable", detail, kept_input=False
        )

    async def _claim(self, job: Job, given: Work | None) -> Work | None:
        """Start an attempt on a job's pending (or stalled) records, loading the upload if not
        given; the work covers the records this claim won."""
        finals = {}
        async with self._session_factory() as session, session.begin():
            claimed = []
            for member in job.members:
                if member.attempts >= MAX_RUNS and not job.retry_later:
                    finals[member.generation_id] = await lifecycle.fail(
                        session,
                        member.generation_id,
                        "upstream_timeout",
                        GAVE_UP,
                        kept=job.kept(),
                    )
                elif await lifecycle.claim(session, member.generation_id, member.attempts):
                    claimed.append(member.generation_id)
            work = (given or await _load_work(session, job)) if claimed else None
            if work is None:  # claimed, but the upload is gone: nothing to resume
                for generation_id in claimed:
                    finals[generation_id] = await lifecycle.fail(
                        session, generation_id, "upstream_timeout", INPUT_GONE, kept=job.kept()
                    )
        await self.announce(finals.values())
        await self._discard_failed(finals)
        return work.only(claimed) if work is not None else None


GAVE_UP = "the work was started several times without finishing; please try again"
INPUT_GONE = "the work was interrupted and its upload is gone; please try again"


def _outcome_for(outcome: FunctionResult | ApiError, generation_id: uuid.UUID) -> Stored | ApiError:
    """One generation's part of the function's answer: its stored result or its error."""
    if isinstance(outcome, ApiError):
        return outcome
    return outcome.outcome(generation_id)


def _retryable(outcome: Any) -> bool:
    return isinstance(outcome, ApiError) and outcome.code in lifecycle.RETRYABLE_CODES


async def _load_work(session: AsyncSession, job: Job) -> Work | None:
    """The kept upload of a job's records, for all its generations; None when there is none
    (a sync upload, held only by its request, whose process died)."""
    if job.kind == "generation":
        stmt = select(GenerationInput.image, GenerationInput.content_type).where(
            GenerationInput.generation_id == job.id
        )
    else:
        stmt = select(PackInput.image, PackInput.content_type).where(PackInput.pack_id == job.id)
    kept = (await session.execute(stmt)).one_or_none()
    if kept is None:
        return None
    column = Generation.id if job.kind == "generation" else Generation.pack_id
    rows = (
        await session.execute(
            select(Generation.id, Generation.user_id, Generation.animal, Generation.style)
            .where(column == job.id)
            .order_by(Generation.created_at, Generation.id)
        )
    ).all()
    if not rows:
        return None
    request = FunctionRequest(
        image=kept.image,
        content_type=kept.content_type,
        user_id=rows[0].user_id,
        targets=tuple(Target(row.id, row.animal) for row in rows),
        style=rows[0].style,  # as it was asked for (a pack's generations share it)
    )
    return Work(request, kept_input=True)
