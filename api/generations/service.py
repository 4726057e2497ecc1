"""Generations: accept an upload and start its work; list, read, delete; the public form."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from pydantic import TypeAdapter
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from starlette.requests import Request

from api.config import Settings
from api.db import utcnow
from api.errors import ApiError, Conflict, NotFound, RateLimited
from api.forwarding.client import DEFAULT_RETRY_AFTER_S, FunctionRequest
from api.generations.models import Generation, GenerationInput, GenerationStatus
from api.generations.runner import UNFINISHED, GenerationRunner, Job, Outcome
from api.generations.schemas import GenerationPublic
from api.pagination import keyset_page, split_page
from api.ratelimit import check_generation_rate_limit, lock_user_generations
from api.storage import ObjectStore, delete_generation_objects
from api.uploads import NormalisedImage, Upload, normalise_upload, read_upload
from api.users.models import User


class GenerationView(Protocol):
    """What the public form reads of a record: an ORM `Generation` or a row of its columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> GenerationStatus: ...
    @property
    def animal(self) -> str: ...
    @property
    def object_name(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_detail(self) -> str | None: ...
    @property
    def faces(self) -> list[dict[str, Any]] | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def completed_at(self) -> datetime | None: ...


# Links signed at once for one page when signing is a round trip (GCS through IAM signBlob).
SIGNING_CONCURRENCY = 50

# Only what the public form shows: plain rows of these are several times cheaper to load
# than ORM objects (no identity map, no instance state), and skip the timings JSON.
PUBLIC_COLUMNS = (
    Generation.id,
    Generation.status,
    Generation.animal,
    Generation.object_name,
    Generation.error_code,
    Generation.error_detail,
    Generation.faces,
    Generation.created_at,
    Generation.completed_at,
)


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
    if generation.object_name:
        await store.delete(generation.object_name)  # the name the record holds, whatever it is
    await delete_generation_objects(store, user_id, generation_id)
    await session.execute(delete(Generation).where(Generation.id == generation_id))
    await session.commit()
    if status in UNFINISHED:
        # Work that finished between the two steps stored an image the runner no longer sees
        # as orphaned (its record still existed): sweep once more.
        await delete_generation_objects(store, user_id, generation_id)


async def image_url(
    generation: GenerationView, store: ObjectStore, settings: Settings
) -> str | None:
    """A freshly signed link to the record's image; None until it succeeded."""
    if generation.status is GenerationStatus.succeeded and generation.object_name:
        return await store.signed_url(generation.object_name, settings.signed_url_ttl_s)
    return None


def public_fields(generation: GenerationView, url: str | None) -> dict[str, Any]:
    """The fields of GenerationPublic, not yet validated."""
    error = None
    if generation.error_code:
        error = {"code": generation.error_code, "detail": generation.error_detail}
    return {
        "id": generation.id,
        "status": generation.status,
        "animal": generation.animal,
        "image_url": url,
        "error": error,
        "faces": generation.faces or [],
        "created_at": generation.created_at,
        "completed_at": generation.completed_at,
    }


async def to_public(
    generation: GenerationView, store: ObjectStore, settings: Settings
) -> GenerationPublic:
    """The record as the API shows it, with a freshly signed image link."""
    url = await image_url(generation, store, settings)
    return GenerationPublic.model_validate(public_fields(generation, url))


# A page validated in one call: one pass in pydantic-core instead of one per item.
PUBLIC_LIST = TypeAdapter(list[GenerationPublic])


async def to_public_many(
    generations: Sequence[GenerationView], store: ObjectStore, settings: Settings
) -> list[GenerationPublic]:
    """Public forms of many records; links signed at once when signing is a network call."""
    if not store.signs_remotely:
        # In turn: local signing is a little CPU, and a task each would cost more.
        fields = [public_fields(g, await image_url(g, store, settings)) for g in generations]
        return PUBLIC_LIST.validate_python(fields)
    limit = asyncio.Semaphore(SIGNING_CONCURRENCY)

    async def one(generation: GenerationView) -> GenerationPublic:
        async with limit:
            return await to_public(generation, store, settings)

    return list(await asyncio.gather(*(one(g) for g in generations)))


@dataclass(frozen=True)
class Accepted:
    """A generation the API took on: the record, and the work on it in this process (if any)."""

    generation: Generation
    work: asyncio.Task[Outcome | None] | None


async def find_by_idempotency_key(
    session: AsyncSession, user_id: uuid.UUID, key: str
) -> Generation | None:
    """The user's record created with this Idempotency-Key, if any."""
    stmt = select(Generation).where(
        Generation.user_id == user_id, Generation.idempotency_key == key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def replay(existing: Generation, upload: Upload) -> Generation:
    """The record a retried request gets back; 409 if the key came with another body."""
    if existing.request_hash != upload.request_hash:
        msg = "this Idempotency-Key was already used with a different image or animal"
        raise Conflict(msg)
    return existing


async def accept_generation(
    session: AsyncSession,
    runner: GenerationRunner,
    settings: Settings,
    user: User,
    request: Request,
    *,
    idempotency_key: str | None,
    respond_async: bool = False,
) -> Accepted:
    """Read and check the upload, record it (with its input), and start the work.

    `respond_async`: the record starts `pending` and the work claims it; otherwise it is
    inserted already claimed (`processing`): a claim of its own would cost a transaction.
    """
    existing = await find_existing(session, user.id, idempotency_key)
    if existing is None:
        # Cheap, before the upload streams in; insert_within_limit counts again atomically.
        await check_generation_rate_limit(session, user.id, settings)
    # Release the connection before the upload streams in: a slow phone must not hold the pool.
    await session.commit()
    upload = await read_upload(request, settings)
    if existing is not None:
        return await accept_replay(session, runner, settings, existing, upload, respond_async)
    image = await normalise_upload(upload, settings)
    generation, created = await record_generation(
        session, settings, user, upload, image, idempotency_key, pending=respond_async
    )
    if not created:
        return Accepted(generation, runner.task_for(generation.id))
    return Accepted(generation, start_work(runner, generation, image))


async def find_existing(
    session: AsyncSession, user_id: uuid.UUID, idempotency_key: str | None
) -> Generation | None:
    """The record an Idempotency-Key already names, if a key came and it does."""
    if idempotency_key is None:
        return None
    return await find_by_idempotency_key(session, user_id, idempotency_key)


async def accept_replay(
    session: AsyncSession,
    runner: GenerationRunner,
    settings: Settings,
    existing: Generation,
    upload: Upload,
    respond_async: bool,
) -> Accepted:
    """A retried request gets its record; one that failed retryably (the function was down or
    slow, not the photo's fault) runs again as a new attempt, not counted against the limit."""
    generation = replay(existing, upload)
    if not retryable(generation):
        return Accepted(generation, runner.task_for(generation.id))
    # The same body (request_hash matched), normalised again: nothing of the selfie was kept.
    image = await normalise_upload(upload, settings)
    if not await reset_for_retry(session, generation, image, pending=respond_async):
        # Another retry of the same key reset it first: answer with that work.
        return Accepted(generation, runner.task_for(generation.id))
    return Accepted(generation, start_work(runner, generation, image))


def retryable(generation: Generation) -> bool:
    """Whether a record failed for a reason a new attempt may fix (an upstream outage)."""
    failed = generation.status is GenerationStatus.failed
    return failed and generation.error_code in RETRYABLE_CODES


async def reset_for_retry(
    session: AsyncSession, generation: Generation, image: NormalisedImage, *, pending: bool
) -> bool:
    """Put a retryably failed record back to work with its upload; False if one did already."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": GenerationStatus.pending if pending else GenerationStatus.processing,
        "attempts": 0 if pending else 1,
        "object_name": None,
        "error_code": None,
        "error_detail": None,
        "completed_at": None,
        "updated_at": now,
    }
    connection = await session.connection()
    reset = await connection.execute(RESET_FAILED, {"generation_id": generation.id, **values})
    if reset.rowcount != 1:
        await session.rollback()
        return False
    await connection.execute(INSERT_INPUT, input_row(generation.id, image, now))
    await session.commit()
    for name, value in values.items():
        set_committed_value(generation, name, value)
    return True


def start_work(
    runner: GenerationRunner, generation: Generation, image: NormalisedImage
) -> asyncio.Task[Outcome | None]:
    """Run the work on a record just written, with its upload in hand (no read back)."""
    forward = FunctionRequest(
        image=image.data,
        content_type=image.content_type,
        animal=generation.animal,
        generation_id=generation.id,
        user_id=generation.user_id,
    )
    claimed = generation.status is GenerationStatus.processing
    return runner.submit(Job(generation.id, generation.attempts), forward, claimed=claimed)


GENERATIONS = cast(Table, Generation.__table__)
INSERT_GENERATION = insert(GENERATIONS)
INSERT_INPUT = insert(cast(Table, GenerationInput.__table__))
# Failures of the function or its upstream, not of the photo: a retry with the same
# Idempotency-Key runs the work again. Any other failure is the answer for that body.
RETRYABLE_CODES = ("upstream_unavailable", "upstream_timeout")
# Only a record still failed retryably is reset: of two racing retries, one wins.
RESET_FAILED = update(GENERATIONS).where(
    GENERATIONS.c.id == bindparam("generation_id"),
    GENERATIONS.c.status == GenerationStatus.failed,
    GENERATIONS.c.error_code.in_(RETRYABLE_CODES),
)


async def record_generation(
    session: AsyncSession,
    settings: Settings,
    user: User,
    upload: Upload,
    image: NormalisedImage,
    idempotency_key: str | None,
    *,
    pending: bool = False,
) -> tuple[Generation, bool]:
    """Insert the record and its input in one transaction, within the user's rate limit; or
    the twin that won a race for the same Idempotency-Key.

    `pending`: left for the work to claim (async); otherwise inserted claimed (`processing`,
    attempt 1), as the work starts at once in this process.
    """
    user_id = user.id  # read now: a rollback expires every loaded object, `user` included
    generation = new_generation(user_id, upload, idempotency_key, pending=pending)
    try:
        await insert_within_limit(session, settings, generation, image)
    except RateLimited:
        await session.rollback()
        raise
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the unique index let one through.
        await session.rollback()
        if idempotency_key is None:
            raise
        twin = await find_by_idempotency_key(session, user_id, idempotency_key)
        if twin is None:
            raise
        return replay(twin, upload), False
    return generation, True


def new_generation(
    user_id: uuid.UUID, upload: Upload, idempotency_key: str | None, *, pending: bool
) -> Generation:
    """A record for a new upload (not yet added anywhere)."""
    now = utcnow()
    return Generation(
        id=uuid.uuid4(),
        user_id=user_id,
        animal=upload.animal,
        status=GenerationStatus.pending if pending else GenerationStatus.processing,
        idempotency_key=idempotency_key,
        request_hash=upload.request_hash,
        attempts=0 if pending else 1,
        created_at=now,
        updated_at=now,
    )


async def insert_within_limit(
    session: AsyncSession, settings: Settings, generation: Generation, image: NormalisedImage
) -> None:
    """Insert, then count under the user's lock, so N concurrent uploads cannot all pass.

    The lock comes after the inserts: it is held for the count and the commit only, as every
    upload of one user waits for it. The count then sees each upload that held it before
    (committed) and this one (its own row); one over the limit rolls back (the caller).
    """
    # Unset columns are left out, so they are SQL NULL (not JSON null) or take their defaults.
    columns = (c.key for c in Generation.__table__.columns)
    row = {key: value for key in columns if (value := getattr(generation, key)) is not None}
    upload_row = input_row(generation.id, image, generation.created_at)
    # Core inserts on the session's connection: neither the ORM's unit of work nor its
    # ORM-enabled INSERT handling, and the statements are built once.
    connection = await session.connection()
    await connection.execute(INSERT_GENERATION, row)
    await connection.execute(INSERT_INPUT, upload_row)
    await lock_user_generations(session, generation.user_id)
    await check_generation_rate_limit(session, generation.user_id, settings, counting_own=True)
    await session.commit()


def input_row(generation_id: uuid.UUID, image: NormalisedImage, now: datetime) -> dict[str, Any]:
    """The generation_inputs row that keeps an upload while its work is unfinished."""
    return {
        "generation_id": generation_id,
        "image": image.data,
        "content_type": image.content_type,
        "created_at": now,
    }


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
        if outcome is not None and generation not in session:
            # The work said what it wrote: no need to read the record back.
            for name, value in outcome.items():
                setattr(generation, name, value)
            return generation
    fresh = await session.get(Generation, generation.id, populate_existing=True)
    if fresh is None:
        raise NotFound(f"no generation {generation.id}")
    return fresh


def failure_of(generation: Generation) -> ApiError:
    """The error a failed record answers with (problem+json), the same as when it failed."""
    code = generation.error_code or "upstream_unavailable"
    retry_after = DEFAULT_RETRY_AFTER_S if code == "upstream_unavailable" else None
    return ApiError.from_code(code, generation.error_detail or code, retry_after_s=retry_after)
