"""A generation's life: the one module that writes a record's status.

    born ──▶ pending ──claim──▶ processing ──succeed──▶ succeeded
                │  ◀──release──────┘  │
                └───────fail──────────┴──fail──▶ failed ──retry──▶ pending | processing

A record is born `pending` (async: the work claims it later) or already `processing` (sync: the
work starts at once in this process). Every write below is guarded by the states it may leave,
so two workers on one record (a slow one, and recovery's) cannot both finish it, and a finished
record is never rewritten. Everyone else asks this module; nothing else updates `status`.

A record that finishes writes its completion event (api.webhooks.events) in the same
transaction, when its owner has a webhook: a pack's, once its last generation finishes.

The upload a pending record needs to survive a restart lives in `generation_inputs` until the
record finishes, in the same transaction; a sync upload is held by its request only (if the API
dies, its client retries with the same Idempotency-Key). A pack's generations share one upload,
in `pack_inputs`, until the last of them finishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Row, Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from api.db import utcnow
from api.generations.models import Generation, GenerationInput, GenerationStatus, Pack, PackInput
from api.webhooks import events

PENDING = GenerationStatus.pending
PROCESSING = GenerationStatus.processing
SUCCEEDED = GenerationStatus.succeeded
FAILED = GenerationStatus.failed
UNFINISHED = (PENDING, PROCESSING)

# Failures of the function or its upstream, not of the photo: a retry with the same
# Idempotency-Key runs the work again. Any other failure is the answer for that body.
RETRYABLE_CODES = ("upstream_unavailable", "upstream_timeout")


def overall_status(statuses: Sequence[GenerationStatus]) -> str:
    """A pack's status, derived from its generations' (one generation's is its own):
    `pending` until work starts, `processing` while any is unfinished, then `succeeded` (all
    did), `failed` (all failed) or `partial`."""
    if all(status is PENDING for status in statuses):
        return PENDING.value
    if any(status in UNFINISHED for status in statuses):
        return PROCESSING.value
    if all(status is SUCCEEDED for status in statuses):
        return SUCCEEDED.value
    return FAILED.value if all(status is FAILED for status in statuses) else "partial"


class Transition(NamedTuple):
    """A move of the state machine: the states it may leave, and the one it enters."""

    sources: tuple[GenerationStatus, ...]
    target: GenerationStatus


# Processing -> processing is recovery claiming work whose worker went quiet.
CLAIM = Transition(UNFINISHED, PROCESSING)
SUCCEED = Transition((PROCESSING,), SUCCEEDED)
FAIL = Transition(UNFINISHED, FAILED)
RELEASE = Transition((PROCESSING,), PENDING)
RETRY_ASYNC = Transition((FAILED,), PENDING)
RETRY_SYNC = Transition((FAILED,), PROCESSING)
# A batch job's result that failed, done again with --retry-failed (batch/): a new outcome.
REDO = Transition((FAILED,), SUCCEEDED)
TRANSITIONS = {
    "claim": CLAIM,
    "succeed": SUCCEED,
    "fail": FAIL,
    "release": RELEASE,
    "retry_async": RETRY_ASYNC,
    "retry_sync": RETRY_SYNC,
    "redo": REDO,
}

GENERATIONS = cast(Table, Generation.__table__)
INPUTS = cast(Table, GenerationInput.__table__)
PACKS = cast(Table, Pack.__table__)
PACK_INPUTS = cast(Table, PackInput.__table__)
# Core statements built once (every generation runs them); the SET clause comes from the
# values' keys, so one statement serves every transition.
INSERT_GENERATION = insert(GENERATIONS)
INSERT_INPUT = insert(INPUTS)
DELETE_INPUT = delete(INPUTS).where(INPUTS.c.generation_id == bindparam("generation_id"))
STATUS_OF = select(GENERATIONS.c.status).where(GENERATIONS.c.id == bindparam("generation_id"))
INSERT_PACK = insert(PACKS)
INSERT_PACK_INPUT = insert(PACK_INPUTS)
# The shared upload goes with the pack's last unfinished generation.
DELETE_FINISHED_PACK_INPUT = delete(PACK_INPUTS).where(
    PACK_INPUTS.c.pack_id == bindparam("pack_id"),
    ~select(GENERATIONS.c.id)
    .where(GENERATIONS.c.pack_id == bindparam("pack_id"), GENERATIONS.c.status.in_(UNFINISHED))
    .exists(),
)
NEXT_PACK_RUN = (
    update(PACKS)
    .where(PACKS.c.id == bindparam("pack_id"), PACKS.c.run == bindparam("seen_run"))
    .values(run=PACKS.c.run + 1)
)


def _move(transition: Transition) -> Any:
    """UPDATE of one record, only while it is in one of the transition's source states."""
    return update(GENERATIONS).where(
        GENERATIONS.c.id == bindparam("generation_id"),
        GENERATIONS.c.status.in_(transition.sources),
    )


MOVES = {transition: _move(transition) for transition in TRANSITIONS.values()}
# A retry resets only a record that failed for a retryable reason: of two racing retries,
# one wins.
RETRY_MOVES = {
    transition: MOVES[transition].where(
        GENERATIONS.c.error_code.in_(RETRYABLE_CODES),
        GENERATIONS.c.run == bindparam("seen_run"),
    )
    for transition in (RETRY_ASYNC, RETRY_SYNC)
}
# A claim names the attempt it saw, so two claims of one sighting cannot both win.
CLAIM_MOVE = MOVES[CLAIM].where(GENERATIONS.c.attempts == bindparam("seen_attempts"))
# A finish says what its event needs of the record.
FINISH_MOVES = {
    transition: MOVES[transition].returning(
        GENERATIONS.c.user_id,
        GENERATIONS.c.pack_id,
        GENERATIONS.c.animal,
        GENERATIONS.c.run,
        GENERATIONS.c.created_at,
    )
    for transition in (SUCCEED, FAIL)
}
# The pack whose generation finished, locked: of two transactions finishing its last two
# generations at once, the second waits here and then sees the first's, so exactly one of
# them finds the pack ended (SQLite serializes writers anyway; it ignores FOR UPDATE).
PACK_FOR_UPDATE = (
    select(PACKS.c.animals, PACKS.c.run).where(PACKS.c.id == bindparam("pack_id")).with_for_update()
)
PACK_MEMBERS = (
    select(GENERATIONS.c.status, GENERATIONS.c.error_code, GENERATIONS.c.error_detail)
    .where(GENERATIONS.c.pack_id == bindparam("pack_id"))
    .order_by(GENERATIONS.c.created_at, GENERATIONS.c.id)
)


@dataclass(frozen=True)
class Kept:
    """Where an unfinished record's upload waits, to be dropped when the work is done with it:
    in its own row (an async generation), in its pack's row shared by the pack's generations
    (gone with the last unfinished one), or nowhere (a sync upload, held by its request)."""

    own: bool = False
    pack_id: uuid.UUID | None = None


OWN_INPUT = Kept(own=True)
NO_INPUT = Kept()


@dataclass(frozen=True)
class StoredInput:
    """The upload a pending record keeps until it finishes."""

    image: bytes
    content_type: str


@dataclass(frozen=True)
class Final:
    """How a finish went: `written` by this call, or the record's status as found (None: gone)."""

    written: bool
    status: GenerationStatus | None
    values: dict[str, Any]
    # The completion event this finish wrote (to hand to the work queue once committed).
    event: uuid.UUID | None = None
    # When written: the record's owner, and the run this finish ended (a retry starts the next).
    user_id: uuid.UUID | None = None
    run: int | None = None
    # When written, for the metrics: the animal, whether it was a pack's, when the record was
    # born, and the pack's status when this finish was the pack's last.
    animal: str | None = None
    in_pack: bool = False
    created_at: datetime | None = None
    pack_status: str | None = None

    @property
    def keeps_objects(self) -> bool:
        """Whether what the function stored for the record is its result (else an orphan)."""
        return self.status is SUCCEEDED


def born(
    user_id: uuid.UUID,
    animal: str,
    *,
    style: str,
    idempotency_key: str | None,
    request_hash: str | None,
    claimed: bool,
    pack_id: uuid.UUID | None = None,
) -> Generation:
    """A new record (not yet written): `processing` at attempt 1 when claimed, else pending."""
    now = utcnow()
    return Generation(
        id=uuid.uuid4(),
        user_id=user_id,
        pack_id=pack_id,
        animal=animal,
        style=style,
        status=PROCESSING if claimed else PENDING,
        run=0,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        attempts=1 if claimed else 0,
        created_at=now,
        updated_at=now,
    )


def born_pack(
    user_id: uuid.UUID,
    animals: Sequence[str],
    *,
    style: str,
    idempotency_key: str | None,
    request_hash: str | None,
    claimed: bool,
) -> tuple[Pack, list[Generation]]:
    """A new pack and its records, one per animal (not yet written), each in the pack's style;
    the key and fingerprint are the pack's."""
    pack = Pack(
        id=uuid.uuid4(),
        user_id=user_id,
        animals=list(animals),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        run=0,
        created_at=utcnow(),
    )
    generations = [
        born(
            user_id,
            animal,
            style=style,
            idempotency_key=None,
            request_hash=None,
            claimed=claimed,
            pack_id=pack.id,
        )
        for animal in animals
    ]
    return pack, generations


def born_finished(
    user_id: uuid.UUID,
    generation_id: uuid.UUID,
    animal: str,
    *,
    style: str,
    object_name: str | None,
    faces: list[dict[str, Any]] | None,
    timings_ms: dict[str, float],
    error: tuple[str, str] | None,
) -> Generation:
    """A record born finished (not yet written): a batch job's result, made outside the API's
    work, so there is no upload to keep and nothing to queue; failed when `error` is given."""
    now = utcnow()
    code, detail = error or (None, None)
    return Generation(
        id=generation_id,
        user_id=user_id,
        animal=animal,
        style=style,
        status=FAILED if error else SUCCEEDED,
        run=0,
        attempts=1,
        object_name=None if error else object_name,
        faces=faces,
        timings_ms=timings_ms,
        error_code=code,
        error_detail=detail,
        created_at=now,
        updated_at=now,
        completed_at=now,
    )


async def insert_finished(session: AsyncSession, generation: Generation) -> bool:
    """Write a record born finished, once per id; whether it was written.

    The same id again is the same batch line run again (after a crash, or with
    --retry-failed): the earlier record stays, unless it failed and this one succeeded.
    """
    connection = await session.connection()
    found = (await connection.execute(STATUS_OF, {"generation_id": generation.id})).scalar()
    if found is None:
        await insert_new(session, generation, None)
        return True
    if found is not FAILED or generation.status is not SUCCEEDED:
        return False
    values = _finished(
        SUCCEEDED,
        object_name=generation.object_name,
        faces=generation.faces,
        timings_ms=generation.timings_ms,
        error_code=None,
        error_detail=None,
    )
    result = await connection.execute(MOVES[REDO], {"generation_id": generation.id, **values})
    return bool(result.rowcount)


async def insert_new(
    session: AsyncSession, generation: Generation, stored: StoredInput | None
) -> None:
    """Write a born record (and the upload it keeps) in the session's transaction."""
    # Unset columns are left out, so they are SQL NULL (not JSON null) or take their defaults.
    columns = (column.key for column in GENERATIONS.columns)
    row = {key: value for key in columns if (value := getattr(generation, key)) is not None}
    connection = await session.connection()
    await connection.execute(INSERT_GENERATION, row)
    if stored is not None:
        await connection.execute(INSERT_INPUT, _input_row(generation.id, stored))


async def insert_pack(
    session: AsyncSession,
    pack: Pack,
    generations: list[Generation],
    stored: StoredInput | None,
) -> None:
    """Write a pack, its born records (one per animal) and the upload it keeps, in the
    session's transaction."""
    connection = await session.connection()
    columns = [column.key for column in PACKS.columns]
    await connection.execute(INSERT_PACK, {key: getattr(pack, key) for key in columns})
    for generation in generations:
        await insert_new(session, generation, None)
    if stored is not None:
        await connection.execute(INSERT_PACK_INPUT, _pack_input_row(pack.id, stored))


async def retry_pack(
    session: AsyncSession, pack_id: uuid.UUID, stored: StoredInput | None, *, seen_run: int
) -> bool:
    """Start a pack's next run (its retryably failed generations go back to work with
    `retry`); False if another retry of the same key started it first."""
    connection = await session.connection()
    moved = await connection.execute(NEXT_PACK_RUN, {"pack_id": pack_id, "seen_run": seen_run})
    if not moved.rowcount:
        return False
    if stored is not None:
        await connection.execute(INSERT_PACK_INPUT, _pack_input_row(pack_id, stored))
    return True


async def claim(session: AsyncSession, generation_id: uuid.UUID, seen_attempts: int) -> bool:
    """Start an attempt on an unfinished record, if nobody did since `seen_attempts` was read."""
    values = {"status": PROCESSING, "attempts": seen_attempts + 1, "updated_at": utcnow()}
    params = {"generation_id": generation_id, "seen_attempts": seen_attempts, **values}
    result = await (await session.connection()).execute(CLAIM_MOVE, params)
    return bool(result.rowcount)


async def succeed(
    session: AsyncSession,
    generation_id: uuid.UUID,
    *,
    object_name: str,
    faces: list[dict[str, Any]],
    timings_ms: dict[str, float],
    kept: Kept = OWN_INPUT,
) -> Final:
    """Record the function's result and drop the upload where it was `kept` (if it was)."""
    values = _finished(
        SUCCEEDED,
        object_name=object_name,
        faces=faces,
        timings_ms=timings_ms,
        error_code=None,
        error_detail=None,
    )
    return await _finish(session, SUCCEED, generation_id, values, kept)


async def fail(
    session: AsyncSession,
    generation_id: uuid.UUID,
    code: str,
    detail: str,
    *,
    kept: Kept = OWN_INPUT,
) -> Final:
    """Record a failure with its SPEC code and drop the kept upload (see `succeed`)."""
    values = _finished(FAILED, error_code=code, error_detail=detail)
    return await _finish(session, FAIL, generation_id, values, kept)


# Locks a failed record while its run is unchanged (a no-op write: a row lock on PostgreSQL,
# the write lock on SQLite), so no retry can start a new run before the transaction ends.
HOLD_FAILED_RUN = (
    update(GENERATIONS)
    .where(
        GENERATIONS.c.id == bindparam("generation_id"),
        GENERATIONS.c.status == FAILED,
        GENERATIONS.c.run == bindparam("seen_run"),
    )
    .values(run=GENERATIONS.c.run)
)


async def still_orphaned(session: AsyncSession, generation_id: uuid.UUID, run: int | None) -> bool:
    """Whether what the function stores for a record is still an orphan, held so until the
    transaction ends: the record is gone (`run` None: it was gone when its work ended), or it
    still ends failed the run `run` (no retry has started since)."""
    connection = await session.connection()
    if run is None:
        found = await connection.execute(STATUS_OF, {"generation_id": generation_id})
        return found.first() is None
    held = await connection.execute(
        HOLD_FAILED_RUN, {"generation_id": generation_id, "seen_run": run}
    )
    return bool(held.rowcount)


async def touch(session: AsyncSession, generation_ids: Sequence[uuid.UUID]) -> None:
    """The heartbeat of records a live process is working on: `processing` ones are marked
    as touched now, so no sweep takes them for stalled (their status does not change)."""
    stmt = (
        update(GENERATIONS)
        .where(GENERATIONS.c.id.in_(generation_ids), GENERATIONS.c.status == PROCESSING)
        .values(updated_at=utcnow())
    )
    await (await session.connection()).execute(stmt)


async def release(session: AsyncSession, generation_id: uuid.UUID) -> bool:
    """Hand a record this process was working on back to pending (shutting down)."""
    values = {"status": PENDING, "updated_at": utcnow()}
    result = await (await session.connection()).execute(
        MOVES[RELEASE], {"generation_id": generation_id, **values}
    )
    return bool(result.rowcount)


async def retry(
    session: AsyncSession,
    generation_id: uuid.UUID,
    stored: StoredInput | None,
    *,
    claimed: bool,
    seen_run: int,
) -> dict[str, Any] | None:
    """Put a retryably failed record back to work as its next run; None if it was not one
    (or another retry of the same key won)."""
    transition = RETRY_SYNC if claimed else RETRY_ASYNC
    values: dict[str, Any] = {
        "status": transition.target,
        "run": seen_run + 1,
        "attempts": 1 if claimed else 0,
        "object_name": None,
        "error_code": None,
        "error_detail": None,
        "completed_at": None,
        "updated_at": utcnow(),
    }
    connection = await session.connection()
    reset = await connection.execute(
        RETRY_MOVES[transition], {"generation_id": generation_id, "seen_run": seen_run, **values}
    )
    if not reset.rowcount:
        return None
    if stored is not None:
        await connection.execute(INSERT_INPUT, _input_row(generation_id, stored))
    return values


def _finished(status: GenerationStatus, **fields: Any) -> dict[str, Any]:
    """The columns a finished record is given: its status, the fields, and when."""
    now = utcnow()
    return {"status": status, **fields, "updated_at": now, "completed_at": now}


async def _finish(
    session: AsyncSession,
    transition: Transition,
    generation_id: uuid.UUID,
    values: dict[str, Any],
    kept: Kept,
) -> Final:
    connection = await session.connection()
    params = {"generation_id": generation_id, **values}
    row = (await connection.execute(FINISH_MOVES[transition], params)).first()
    if kept.pack_id is not None:
        # Whether or not this record was finished here, its pack may have no unfinished one left.
        await connection.execute(DELETE_FINISHED_PACK_INPUT, {"pack_id": kept.pack_id})
    if row is not None:
        if kept.own:  # the selfie is kept only while the work needs it
            await connection.execute(DELETE_INPUT, {"generation_id": generation_id})
        pack_status = None
        if row.pack_id is None:
            event = await _generation_ended(connection, generation_id, row, values)
        else:
            pack_status, event = await _pack_member_ended(connection, row, values)
        return Final(
            written=True,
            status=transition.target,
            values=values,
            event=event,
            user_id=row.user_id,
            run=row.run,
            animal=row.animal,
            in_pack=row.pack_id is not None,
            created_at=row.created_at,
            pack_status=pack_status,
        )
    # Deleted while the work ran, or finished already by another worker: say which.
    status = (await connection.execute(STATUS_OF, {"generation_id": generation_id})).scalar()
    return Final(written=False, status=status, values={})


async def _generation_ended(
    connection: AsyncConnection, generation_id: uuid.UUID, row: Row[Any], values: dict[str, Any]
) -> uuid.UUID | None:
    """Write the completion event of a single generation just finished, if its owner has a
    webhook."""
    return await events.generation_ended(
        connection,
        generation_id=generation_id,
        user_id=row.user_id,
        animal=row.animal,
        run=row.run,
        values=values,
    )


async def _pack_member_ended(
    connection: AsyncConnection, row: Row[Any], values: dict[str, Any]
) -> tuple[str | None, uuid.UUID | None]:
    """When a pack's generation just finished was its last unfinished one: the pack's status,
    and its completion event if its owner has a webhook."""
    pack = (await connection.execute(PACK_FOR_UPDATE, {"pack_id": row.pack_id})).first()
    if pack is None:
        return None, None
    members = (await connection.execute(PACK_MEMBERS, {"pack_id": row.pack_id})).all()
    if not members or any(member.status in UNFINISHED for member in members):
        return None, None
    status = overall_status([member.status for member in members])
    if not await events.has_webhook(connection, row.user_id):
        return status, None
    failed = next((m for m in members if m.status is FAILED), None)
    error = (
        (failed.error_code, failed.error_detail) if failed and status == "failed" else (None, None)
    )
    event = await events.pack_ended(
        connection,
        pack_id=row.pack_id,
        user_id=row.user_id,
        animals=pack.animals,
        run=pack.run,
        status=status,
        error=error,
        at=values["completed_at"],
    )
    return status, event


def _input_row(generation_id: uuid.UUID, stored: StoredInput) -> dict[str, Any]:
    return {"generation_id": generation_id, **_kept_upload(stored)}


def _pack_input_row(pack_id: uuid.UUID, stored: StoredInput) -> dict[str, Any]:
    return {"pack_id": pack_id, **_kept_upload(stored)}


def _kept_upload(stored: StoredInput) -> dict[str, Any]:
    return {"image": stored.image, "content_type": stored.content_type, "created_at": utcnow()}
