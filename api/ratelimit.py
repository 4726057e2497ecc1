"""The per-user limit on generations: a sliding window counted in the history itself."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.db import utcnow
from api.errors import RateLimited
from api.generations.models import Generation
from api.users.models import User

# Served by the (user_id, created_at, id) index; the oldest one in the window says when a slot
# frees up. Built once: every upload runs it, and a reused statement keeps its cache key.
RECENT_GENERATIONS = select(func.count(), func.min(Generation.created_at)).where(
    Generation.user_id == bindparam("user_id"), Generation.created_at > bindparam("since")
)

# When the n-th oldest generation of the window was made (OFFSET n - 1).
NTH_OLDEST = (
    select(Generation.created_at)
    .where(Generation.user_id == bindparam("user_id"), Generation.created_at > bindparam("since"))
    .order_by(Generation.created_at)
    .offset(bindparam("offset"))
    .limit(1)
)

# PostgreSQL: a lock on the user's key held until the transaction ends; other users' uploads
# do not wait for it.
ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# SQLite has one writer at a time, taken at a transaction's first write: a write that changes
# nothing takes it before the count (what BEGIN IMMEDIATE does), so the count sees every insert.
TAKE_WRITE_LOCK = (
    update(User).where(User.id == bindparam("user_id")).values(created_at=User.created_at)
)


async def lock_user_generations(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise the user's new generations until this transaction ends (count, then insert)."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(user_id.bytes[:8], "big", signed=True)
        await connection.execute(ADVISORY_LOCK, {"key": key})
    else:
        await connection.execute(TAKE_WRITE_LOCK, {"user_id": user_id})


async def check_generation_rate_limit(
    session: AsyncSession,
    user_id: uuid.UUID,
    settings: Settings,
    *,
    adding: int = 1,
    counted: bool = False,
) -> None:
    """Raise RateLimited (429, Retry-After) unless `adding` more generations (a pack's
    animals, or one) fit in the user's window, all of them.

    `counted`: the new records are already inserted (in this transaction) and counted.
    """
    now = utcnow()
    window_start = now - timedelta(seconds=settings.rate_limit_window_s)
    params = {"user_id": user_id, "since": window_start}
    count, oldest = (await session.execute(RECENT_GENERATIONS, params)).one()
    earlier = count - adding if counted else count  # the window's generations before these
    over = earlier + adding - settings.rate_limit_generations
    if over <= 0:
        return
    # A slot frees when a generation leaves the window: `over` of them must, oldest first.
    frees_at = now
    if over == 1 and oldest is not None:
        frees_at = oldest + timedelta(seconds=settings.rate_limit_window_s)
    elif over > 1:
        nth = await session.scalar(NTH_OLDEST, {**params, "offset": over - 1})
        if nth is not None:
            frees_at = nth + timedelta(seconds=settings.rate_limit_window_s)
    retry_after_s = max(1, math.ceil((frees_at - now).total_seconds()))
    wanted = f"{adding} more need" if adding > 1 else "one more needs"
    msg = (
        f"at most {settings.rate_limit_generations} generations per "
        f"{settings.rate_limit_window_s} s; {wanted} room: try again in {retry_after_s} s"
    )
    raise RateLimited(msg, retry_after_s=retry_after_s)
