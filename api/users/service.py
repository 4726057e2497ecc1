"""Users: creation with a fresh key, erasure, the admin list."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Conflict
from api.pagination import keyset_page, split_page
from api.security import generate_api_key, hash_api_key, key_prefix
from api.storage import ObjectStore, user_prefix
from api.users.models import ApiKey, User
from api.users.schemas import UserCreate


async def create_user(session: AsyncSession, data: UserCreate) -> tuple[User, str]:
    """A new user and their API key; Conflict if the username or email is taken."""
    user = User(id=uuid.uuid4(), username=data.username, email=data.email)
    key = generate_api_key()
    api_key = ApiKey(user_id=user.id, key_hash=hash_api_key(key), prefix=key_prefix(key))
    try:
        # Two flushes (no relationship() orders the rows), one commit: nothing is half-written.
        session.add(user)
        await session.flush()
        session.add(api_key)
        await session.commit()
    except IntegrityError as exc:
        # The unique constraints decide, so two racing requests cannot both win.
        await session.rollback()
        raise Conflict(await _taken(session, data)) from exc
    return user, key


async def _taken(session: AsyncSession, data: UserCreate) -> str:
    username = data.username.lower()
    stmt = select(User.username, User.email).where(
        or_(func.lower(User.username) == username, User.email == data.email)
    )
    rows = (await session.execute(stmt)).all()
    if any(row.username.lower() == username for row in rows):
        return f"username {data.username!r} is taken"
    return "email is already registered"


async def delete_user(session: AsyncSession, store: ObjectStore, user: User) -> None:
    """Erase the user's stored images, then the user (history and keys cascade)."""
    # Images first: if that fails the user can retry, and no image is left without an owner.
    prefix = user_prefix(user.id)
    await store.delete_prefix(prefix)
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()
    # Work in flight may have stored an image between the two steps; any that finishes later
    # finds its record gone and deletes its own image (see the runner).
    await store.delete_prefix(prefix)


async def list_users(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[Sequence[User], str | None]:
    """One page of every user, newest first."""
    stmt = keyset_page(select(User), User.created_at, User.id, cursor=cursor, limit=limit)
    rows = (await session.execute(stmt)).scalars().all()
    return split_page(rows, limit)
