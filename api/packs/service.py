"""Packs: take one upload on for several animals (limits, idempotency, the records, their
work); read one; forget an emptied one.

A pack is a generation per animal plus one row that says what was asked (animals, key,
fingerprint). Its status is derived from its generations (lifecycle.overall_status), so there is
no second truth to keep in step; its work is one job (api.generations.runner): one upload, one
call to the function for all its unfinished generations. Deleting one of its generations leaves
the others (api.generations.service.delete_generation); the last one takes the pack with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from api.config import Settings
from api.db import utcnow
from api.errors import InvalidRequest, NotFound
from api.forwarding.client import FunctionRequest, Target
from api.generations import idempotency, lifecycle
from api.generations.models import Generation, Pack
from api.generations.presenter import failure_of
from api.generations.runner import GenerationRunner, Job, Outcome
from api.generations.service import (
    UploadReader,
    kept,
    prepare_upload,
    start_job,
    within_rate_limit,
)
from api.images import PreparedImage
from api.ratelimit import check_generation_rate_limit
from api.uploads import Upload
from api.work import WorkQueue


@dataclass(frozen=True)
class PackView:
    """A pack with its generations in the order its animals were asked for."""

    pack: Pack
    generations: Sequence[Generation]

    @property
    def status(self) -> str:
        return lifecycle.overall_status([g.status for g in self.generations])

    @property
    def completed_at(self) -> datetime | None:
        """When the last generation finished; None while any is unfinished."""
        finished = [g.completed_at for g in self.generations]
        if not finished or any(at is None for at in finished):
            return None
        return max(at for at in finished if at is not None)


@dataclass(frozen=True)
class AcceptedPack:
    """A pack the API took on, and the work on it in this process (if any)."""

    pack: Pack
    work: asyncio.Task[Outcome | None] | None


async def create_pack(
    session: AsyncSession,
    runner: GenerationRunner,
    queue: WorkQueue,
    settings: Settings,
    user_id: uuid.UUID,
    read_upload: UploadReader,
    *,
    idempotency_key: str | None,
    respond_async: bool,
) -> PackView:
    """Take an upload on for several animals and return the pack: finished unless
    `respond_async` (pending then). A pack whose every generation failed raises the first
    one's error, as a single generation does; a partial one is an answer."""
    accepted = await accept_pack(
        session,
        runner,
        queue,
        settings,
        user_id,
        read_upload,
        idempotency_key=idempotency_key,
        respond_async=respond_async,
    )
    if not respond_async and accepted.work is not None:
        # Shielded: a client that hangs up does not cancel the work; the records still finish.
        await asyncio.shield(accepted.work)
    view = await read_pack(session, accepted.pack)
    if view.status == lifecycle.FAILED.value:
        raise failure_of(view.generations[0])
    return view


async def accept_pack(
    session: AsyncSession,
    runner: GenerationRunner,
    queue: WorkQueue,
    settings: Settings,
    user_id: uuid.UUID,
    read_upload: UploadReader,
    *,
    idempotency_key: str | None,
    respond_async: bool,
) -> AcceptedPack:
    """Check the limit, read and prepare the upload, record the pack and a generation per
    animal (all within the rate limit, or none), and start the work: as for a generation
    (api.generations.service.accept), one job for the whole pack."""
    existing = await idempotency.find_pack(session, user_id, idempotency_key)
    if existing is None:
        # Cheap, before the upload streams in (room for one at least); the whole pack is
        # counted atomically once its records are written.
        await check_generation_rate_limit(session, user_id, settings)
    await session.commit()  # release the connection while the upload streams in
    upload = await read_upload(idempotency_key is not None)
    if existing is not None:
        return await accept_pack_retry(
            session, runner, queue, settings, existing, upload, respond_async
        )
    if len(upload.animals) > settings.rate_limit_generations:
        msg = (
            f"a pack of {len(upload.animals)} animals can never fit the limit of "
            f"{settings.rate_limit_generations} generations per {settings.rate_limit_window_s} s"
        )
        raise InvalidRequest(msg)
    image = await prepare_upload(upload, settings)
    pack = Pack(
        id=uuid.uuid4(),
        user_id=user_id,
        animals=list(upload.animals),
        idempotency_key=idempotency_key,
        request_hash=upload.request_hash,
        run=0,
        created_at=utcnow(),
    )
    generations = [
        lifecycle.born(
            user_id,
            animal,
            idempotency_key=None,
            request_hash=None,
            claimed=not respond_async,
            pack_id=pack.id,
        )
        for animal in upload.animals
    ]
    key, request_hash = idempotency_key, upload.request_hash

    async def twin() -> Pack | None:
        found = await idempotency.find_pack(session, user_id, key)
        return idempotency.replay(found, request_hash) if found is not None else None

    won = await within_rate_limit(
        session,
        settings,
        user_id,
        partial(lifecycle.insert_pack, session, pack, generations, kept(image, respond_async)),
        adding=len(generations),
        twin=twin,
    )
    if won is not None:
        return AcceptedPack(won, runner.task_for(won.id))
    work = await _start(session, runner, queue, pack, generations, image)
    return AcceptedPack(pack, work)


async def accept_pack_retry(
    session: AsyncSession,
    runner: GenerationRunner,
    queue: WorkQueue,
    settings: Settings,
    existing: Pack,
    upload: Upload,
    respond_async: bool,
) -> AcceptedPack:
    """A retried request gets its pack; when every generation finished and some failed
    retryably (the function was down or slow), those run again as the pack's next run (not
    counted against the limit), from the retried request's own body."""
    pack = idempotency.replay(existing, upload.request_hash)
    view = await read_pack(session, pack)
    again = [g for g in view.generations if idempotency.runs_again(g)]
    if not again or any(g.status in lifecycle.UNFINISHED for g in view.generations):
        return AcceptedPack(pack, runner.task_for(pack.id))
    image = await prepare_upload(upload, settings)
    claimed = not respond_async
    if not await lifecycle.retry_pack(
        session, pack.id, kept(image, respond_async), seen_run=pack.run
    ):
        await session.rollback()  # another retry of the same key started it first
        return AcceptedPack(pack, runner.task_for(pack.id))
    for generation in again:
        values = await lifecycle.retry(
            session, generation.id, None, claimed=claimed, seen_run=generation.run
        )
        for name, value in (values or {}).items():
            set_committed_value(generation, name, value)
    await session.commit()
    set_committed_value(pack, "run", pack.run + 1)
    return AcceptedPack(pack, await _start(session, runner, queue, pack, again, image))


async def _start(
    session: AsyncSession,
    runner: GenerationRunner,
    queue: WorkQueue,
    pack: Pack,
    generations: Sequence[Generation],
    image: PreparedImage,
) -> asyncio.Task[Outcome | None] | None:
    request = FunctionRequest(
        image=image.data,
        content_type=image.content_type,
        user_id=pack.user_id,
        targets=tuple(Target(g.id, g.animal) for g in generations),
    )
    job = Job.fresh("pack", pack.id, (g.id for g in generations))
    return await start_job(session, runner, queue, job, pack.run, request, generations)


async def read_pack(session: AsyncSession, pack: Pack) -> PackView:
    """A pack with its generations as they are now, in its animals' order."""
    stmt = select(Generation).where(Generation.pack_id == pack.id)
    found = (await session.execute(stmt.execution_options(populate_existing=True))).scalars()
    order = {animal: i for i, animal in enumerate(pack.animals)}
    return PackView(pack, sorted(found, key=lambda g: order.get(g.animal, len(order))))


async def get_pack(session: AsyncSession, user_id: uuid.UUID, pack_id: uuid.UUID) -> PackView:
    """The caller's pack; someone else's is as unknown as a missing one (404)."""
    pack = await session.get(Pack, pack_id)
    if pack is None or pack.user_id != user_id:
        raise NotFound(f"no pack {pack_id}")
    return await read_pack(session, pack)
