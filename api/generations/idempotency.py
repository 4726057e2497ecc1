"""Idempotency-Key: a retried request finds its record; a reused key with another body is 409."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Conflict
from api.generations import lifecycle
from api.generations.models import Generation, Pack


class Fingerprinted(Protocol):
    """A record created with an Idempotency-Key: a generation or a pack."""

    @property
    def request_hash(self) -> str | None: ...


R = TypeVar("R", bound=Fingerprinted)


async def find(
    session: AsyncSession, user_id: uuid.UUID, idempotency_key: str | None
) -> Generation | None:
    """The user's record created with this Idempotency-Key, if a key came and it does."""
    if idempotency_key is None:
        return None
    stmt = select(Generation).where(
        Generation.user_id == user_id, Generation.idempotency_key == idempotency_key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_pack(
    session: AsyncSession, user_id: uuid.UUID, idempotency_key: str | None
) -> Pack | None:
    """The user's pack created with this Idempotency-Key, if a key came and it does."""
    if idempotency_key is None:
        return None
    stmt = select(Pack).where(Pack.user_id == user_id, Pack.idempotency_key == idempotency_key)
    return (await session.execute(stmt)).scalar_one_or_none()


def replay(existing: R, request_hash: str | None) -> R:
    """The record a retried request gets back; Conflict if the key came with another body.

    A request with a key is always fingerprinted, so `request_hash` is set whenever this runs.
    """
    if existing.request_hash != request_hash:
        msg = "this Idempotency-Key was already used with a different image, animal(s) or style"
        raise Conflict(msg)
    return existing


def runs_again(generation: Generation) -> bool:
    """Whether a retried request runs the work again: the record failed for a reason a new
    attempt may fix (the function was down or slow, not the photo's fault)."""
    failed = generation.status is lifecycle.FAILED
    return failed and generation.error_code in lifecycle.RETRYABLE_CODES
