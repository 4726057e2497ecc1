"""Generations: take an upload on (limits, idempotency, the record, its work); list; delete.

HTTP stays in the router and api.uploads; status changes in api.generations.lifecycle; the
public form in api.generations.presenter.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from api.config import Settings
from api.errors import NotFound, RateLimited, UpstreamUnavailable
from api.forwarding.client import FunctionRequest, Target
from api.generations import idempotency, lifecycle
from api.generations.models import Generation, Pack
from api.generations.presenter import PUBLIC_COLUMNS, GenerationView, failure_of
from api.generations.runner import GenerationRunner, Job, Outcome, Work
from api.images import PreparedImage, prepare, worth_a_thread
from api.pagination import keyset_page, split_page
from api.ratelimit import check_generation_rate_limit, lock_user_generations
from api.storage import ObjectStore, delete_generation_objects
from api.uploads import Upload
from api.work import QueuedJob, WorkQueue

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The request's body, read when the service is ready for it (after the cheap checks); the
# argument says whether to fingerprint it (only an Idempotency-Key needs the hash).
UploadReader = Callable[[bool], Awaitable[Upload]]


@dataclass(frozen=True)
class Intake:
    """One upload request being taken on (a generation or a pack): what it asked, and what
    taking it on needs."""

    session: AsyncSession
    settings: Settings
    runner: GenerationRunner
    queue: WorkQueue
    user_id: uuid.UUID
    read_upload: UploadReader
    idempotency_key: str | None
    respond_async: bool

    async def upload_after_checks(self, existing: object | None) -> Upload:
        """The cheap checks, then the upload read. A new request must find room for one
        generation at least (the records written are counted again, atomically); the
        connection is released before the body streams in: a slow phone must not hold the
        pool."""
        if existing is None:
            await check_generation_rate_limit(self.session, self.user_id, self.settings)
        await self.session.commit()
        return await self.read_upload(self.idempotency_key is not None)

    def kept(self, image: PreparedImage) -> lifecycle.StoredInput | None:
        """What an async request's records keep of the upload until their work is done; sync
        keeps nothing."""
        if not self.respond_async:
            return None
        return lifecycle.StoredInput(image.data, image.content_type)


@dataclass(frozen=True)
class Accepted:
    """A generation the API took on: the record, and the work on it in this process (if any)."""

    generation: Generation
    work: asyncio.Task[Outcome | None] | None


async def create_generation(intake: Intake) -> Generation:
    """Take an upload on and return its record: finished unless `respond_async` (pending then).

    A record that failed raises the error it answers with, whenever it failed.
    """
    accepted = await accept(intake)
    generation = await settle(intake.session, accepted, wait=not intake.respond_async)
    if generation.status is lifecycle.FAILED:
        raise failure_of(generation)
    return generation


async def accept(intake: Intake) -> Accepted:
    """Check the limit, read and prepare the upload, record it, and start the work.

    Sync: the record is born claimed (`processing`), the upload held by the request only, and
    the work runs in this process. Async: it is born `pending` with its upload kept, and
    enqueued once committed (api.work); the work claims it wherever the queue runs it.
    """
    existing = await idempotency.find(intake.session, intake.user_id, intake.idempotency_key)
    upload = await intake.upload_after_checks(existing)
    if existing is not None:
        return await accept_retry(intake, existing, upload)
    image = await prepare_upload(upload, intake.settings)
    generation = lifecycle.born(
        intake.user_id,
        upload.animal,
        style=upload.style,
        idempotency_key=intake.idempotency_key,
        request_hash=upload.request_hash,
        claimed=not intake.respond_async,
    )
    twin = await admit(intake.session, intake.settings, generation, intake.kept(image))
    if twin is not None:
        return Accepted(twin, intake.runner.task_for(twin.id))
    return Accepted(generation, await start_work(intake, generation, image))


async def prepare_upload(upload: Upload, settings: Settings) -> PreparedImage:
    """The upload checked and stripped of its metadata (api.images); in a worker thread when
    that frees the event loop (api.images.worth_a_thread)."""
    if not worth_a_thread(upload.image):
        return prepare(upload.image, **_prepare_limits(settings))
    return await asyncio.to_thread(prepare, upload.image, **_prepare_limits(settings))


def _prepare_limits(settings: Settings) -> dict[str, int]:
    return {"max_pixels": settings.max_pixels, "heic_max_side_px": settings.forward_max_side_px}


async def admit(
    session: AsyncSession,
    settings: Settings,
    generation: Generation,
    stored: lifecycle.StoredInput | None,
) -> Generation | None:
    """Write a new record within the user's rate limit; or return the twin that won a race for
    the same Idempotency-Key (None when this one was written)."""
    user_id = generation.user_id  # read now: a rollback expires every loaded object
    key, request_hash = generation.idempotency_key, generation.request_hash

    async def twin() -> Generation | None:
        found = await idempotency.find(session, user_id, key)
        return idempotency.replay(found, request_hash) if found is not None else None

    return await within_rate_limit(
        session,
        settings,
        user_id,
        partial(lifecycle.insert_new, session, generation, stored),
        adding=1,
        twin=twin,
    )


async def within_rate_limit(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    write: Callable[[], Awaitable[None]],
    *,
    adding: int,
    twin: Callable[[], Awaitable[T | None]],
) -> T | None:
    """Write `adding` new records (with `write`) within the user's rate limit, all or none; or
    return the twin that won a race for the same Idempotency-Key (None when they were written).

    Insert first, then count under the user's lock, so N concurrent uploads cannot all pass: the
    lock is held for the count and the commit only, and the count sees each upload that held it
    before (committed) and these (its own rows); over the limit, they all roll back.
    """
    try:
        await write()
        await lock_user_generations(session, user_id)
        await check_generation_rate_limit(session, user_id, settings, adding=adding, counted=True)
        await session.commit()
    except RateLimited:
        await session.rollback()
        raise
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the unique index let one through.
        await session.rollback()
        found = await twin()
        if found is None:
            raise
        return found
    return None


async def accept_retry(intake: Intake, existing: Generation, upload: Upload) -> Accepted:
    """A retried request gets its record; one that failed retryably runs again as a new
    attempt (not counted against the limit), from the retried request's own body."""
    runner, session = intake.runner, intake.session
    generation = idempotency.replay(existing, upload.request_hash)
    if not idempotency.runs_again(generation):
        return Accepted(generation, runner.task_for(generation.id))
    image = await prepare_upload(upload, intake.settings)
    values = await lifecycle.retry(
        session,
        generation.id,
        intake.kept(image),
        claimed=not intake.respond_async,
        seen_run=generation.run,
    )
    if values is None:
        # Another retry of the same key reset it first: answer with that work.
        await session.rollback()
        return Accepted(generation, runner.task_for(generation.id))
    await session.commit()
    for name, value in values.items():
        set_committed_value(generation, name, value)
    return Accepted(generation, await start_work(intake, generation, image))


async def start_work(
    intake: Intake, generation: Generation, image: PreparedImage
) -> asyncio.Task[Outcome | None] | None:
    """Start the work on a generation just committed, with its upload in hand (no read back)."""
    job = Job.of_generation(generation.id, generation.attempts)
    return await start_job(intake, job, generation.run, image, [generation])


async def start_job(
    intake: Intake,
    job: Job,
    run: int,
    image: PreparedImage,
    generations: Sequence[Generation],
) -> asyncio.Task[Outcome | None] | None:
    """Start the work on records just committed, with the upload in hand: a sync upload's
    (born or retried claimed) here and now, an async one's through the queue. Returns the work
    if it runs here.

    A queue that cannot take the job fails the records retryably (503): a pending record with
    nothing to run it would stay pending for ever.
    """
    request = FunctionRequest(
        image=image.data,
        content_type=image.content_type,
        user_id=intake.user_id,
        targets=tuple(Target(g.id, g.animal) for g in generations),
        style=generations[0].style,  # a pack's generations share its style
    )
    if generations[0].status is lifecycle.PROCESSING:  # sync: born (or retried) claimed
        return intake.runner.submit(job, Work(request, kept_input=False), claimed=True)
    try:
        await intake.queue.enqueue(
            QueuedJob(job.kind, job.id, run), work=Work(request, kept_input=True)
        )
    except Exception as exc:
        await _not_queued(intake, job, generations)
        if isinstance(exc, UpstreamUnavailable):
            raise
        logger.exception("%s %s could not be queued", job.kind, job.id)
        raise UpstreamUnavailable(NOT_QUEUED, retry_after_s=NOT_QUEUED_RETRY_AFTER_S) from exc
    return intake.runner.task_for(job.id)


NOT_QUEUED = "the work queue did not take the generation; please try again"
NOT_QUEUED_RETRY_AFTER_S = 5


async def _not_queued(intake: Intake, job: Job, generations: Sequence[Generation]) -> None:
    """Fail records whose job the queue did not take (a retry with its key runs them again)."""
    session = intake.session
    written: dict[uuid.UUID, dict[str, Any]] = {}
    finals = []
    try:
        for generation in generations:
            final = await lifecycle.fail(
                session, generation.id, "upstream_unavailable", NOT_QUEUED, kept=job.kept()
            )
            written[generation.id] = final.values
            finals.append(final)
        await session.commit()
    except Exception:
        await session.rollback()
        written, finals = {}, []
        logger.exception("%s %s was not queued and could not be failed", job.kind, job.id)
    for generation in generations:
        for name, value in written.get(generation.id, {}).items():
            set_committed_value(generation, name, value)
    await intake.runner.announce(finals)


async def settle(session: AsyncSession, accepted: Accepted, *, wait: bool) -> Generation:
    """The record after its work ends (when `wait` and the work runs here)."""
    generation = accepted.generation
    if not wait and generation not in session:
        # A record just inserted, as it was accepted (async: pending), not however far its
        # work got since; a replayed one is read afresh below.
        return generation
    if wait and accepted.work is not None:
        # Shielded: a client that hangs up does not cancel the work; the record still finishes.
        outcome = await asyncio.shield(accepted.work)
        if outcome and generation.id in outcome and generation not in session:
            # The work said what it wrote: no need to read the record back.
            for name, value in outcome[generation.id].items():
                setattr(generation, name, value)
            return generation
    fresh = await session.get(Generation, generation.id, populate_existing=True)
    if fresh is None:
        raise NotFound(f"no generation {generation.id}")
    return fresh


async def list_generations(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[Sequence[GenerationView], str | None]:
    """One page of the user's history, newest first."""
    stmt = select(*PUBLIC_COLUMNS).where(Generation.user_id == user_id)
    stmt = keyset_page(stmt, Generation.created_at, Generation.id, cursor=cursor, limit=limit)
    rows = (await session.execute(stmt)).all()
    # A Row has the columns as attributes; mypy cannot see that through Row's typing.
    return split_page(cast(Sequence[GenerationView], rows), limit)


async def delete_generation(
    session: AsyncSession, store: ObjectStore, generation: Generation
) -> None:
    """Delete the stored image, then the record."""
    # By prefix, not object_name: a failed or unfinished record does not name what the function
    # may still have stored. Image first: if that fails the record stays, so the user can retry.
    user_id, generation_id, status = generation.user_id, generation.id, generation.status
    pack_id = generation.pack_id
    if generation.object_name:
        await store.delete(generation.object_name)  # the name the record holds, whatever it is
    await delete_generation_objects(store, user_id, generation_id)
    await session.execute(delete(Generation).where(Generation.id == generation_id))
    if pack_id is not None:
        # The pack's other generations stay; a pack left with none goes with its last one.
        remaining = select(Generation.id).where(Generation.pack_id == pack_id).exists()
        await session.execute(delete(Pack).where(Pack.id == pack_id, ~remaining))
    await session.commit()
    if status in lifecycle.UNFINISHED:
        # Work that finished between the two steps stored an image the runner no longer sees
        # as orphaned (its record still existed): sweep once more.
        await delete_generation_objects(store, user_id, generation_id)
