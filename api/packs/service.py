"""Packs: take one upload on for several animals (limits, idempotency, the records, their
work); read one.

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

from api.animals import DEFAULT_STYLE
from api.errors import InvalidRequest, NotFound
from api.generations import idempotency, lifecycle
from api.generations.models import Generation, Pack
from api.generations.presenter import failure_of
from api.generations.runner import Job, Outcome
from api.generations.service import Intake, prepare_upload, start_job, within_rate_limit
from api.images import PreparedImage
from api.uploads import Upload


@dataclass(frozen=True)
class PackView:
    """A pack with its generations in the order its animals were asked for."""

    pack: Pack
    generations: Sequence[Generation]

    @property
    def status(self) -> str:
        return lifecycle.overall_status([g.status for g in self.generations])

    @property
    def style(self) -> str:
        """How the pack's animals are drawn: each of its generations was born in its style."""
        return self.generations[0].style if self.generations else DEFAULT_STYLE

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


async def create_pack(intake: Intake) -> PackView:
    """Take an upload on for several animals and return the pack: finished unless
    `respond_async` (pending then). A pack whose every generation failed raises the first
    one's error, as a single generation does; a partial one is an answer."""
    accepted = await accept_pack(intake)
    if not intake.respond_async and accepted.work is not None:
        # Shielded: a client that hangs up does not cancel the work; the records still finish.
        await asyncio.shield(accepted.work)
    view = await read_pack(intake.session, accepted.pack)
    if view.status == lifecycle.FAILED.value:
        raise failure_of(view.generations[0])
    return view


async def accept_pack(intake: Intake) -> AcceptedPack:
    """Check the limit, read and prepare the upload, record the pack and a generation per
    animal (all within the rate limit, or none), and start the work: as for a generation
    (api.generations.service.accept), one job for the whole pack."""
    session, settings, user_id = intake.session, intake.settings, intake.user_id
    existing = await idempotency.find_pack(session, user_id, intake.idempotency_key)
    upload = await intake.upload_after_checks(existing)
    if existing is not None:
        return await accept_pack_retry(intake, existing, upload)
    if len(upload.animals) > settings.rate_limit_generations:
        msg = (
            f"a pack of {len(upload.animals)} animals can never fit the limit of "
            f"{settings.rate_limit_generations} generations per {settings.rate_limit_window_s} s"
        )
        raise InvalidRequest(msg)
    image = await prepare_upload(upload, settings)
    pack, generations = lifecycle.born_pack(
        user_id,
        upload.animals,
        style=upload.style,
        idempotency_key=intake.idempotency_key,
        request_hash=upload.request_hash,
        claimed=not intake.respond_async,
    )
    key, request_hash = intake.idempotency_key, upload.request_hash

    async def twin() -> Pack | None:
        found = await idempotency.find_pack(session, user_id, key)
        return idempotency.replay(found, request_hash) if found is not None else None

    won = await within_rate_limit(
        session,
        settings,
        user_id,
        partial(lifecycle.insert_pack, session, pack, generations, intake.kept(image)),
        adding=len(generations),
        twin=twin,
    )
    if won is not None:
        return AcceptedPack(won, intake.runner.task_for(won.id))
    return AcceptedPack(pack, await _start(intake, pack, generations, image))


async def accept_pack_retry(intake: Intake, existing: Pack, upload: Upload) -> AcceptedPack:
    """A retried request gets its pack; when every generation finished and some failed
    retryably (the function was down or slow), those run again as the pack's next run (not
    counted against the limit), from the retried request's own body."""
    session, runner = intake.session, intake.runner
    pack = idempotency.replay(existing, upload.request_hash)
    view = await read_pack(session, pack)
    again = [g for g in view.generations if idempotency.runs_again(g)]
    if not again or any(g.status in lifecycle.UNFINISHED for g in view.generations):
        return AcceptedPack(pack, runner.task_for(pack.id))
    image = await prepare_upload(upload, intake.settings)
    if not await lifecycle.retry_pack(session, pack.id, intake.kept(image), seen_run=pack.run):
        await session.rollback()  # another retry of the same key started it first
        return AcceptedPack(pack, runner.task_for(pack.id))
    for generation in again:
        values = await lifecycle.retry(
            session, generation.id, None, claimed=not intake.respond_async, seen_run=generation.run
        )
        for name, value in (values or {}).items():
            set_committed_value(generation, name, value)
    await session.commit()
    set_committed_value(pack, "run", pack.run + 1)
    return AcceptedPack(pack, await _start(intake, pack, again, image))


async def _start(
    intake: Intake, pack: Pack, generations: Sequence[Generation], image: PreparedImage
) -> asyncio.Task[Outcome | None] | None:
    job = Job.fresh("pack", pack.id, (g.id for g in generations))
    return await start_job(intake, job, pack.run, image, generations)


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
