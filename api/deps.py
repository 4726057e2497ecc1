"""FastAPI dependencies, as `Annotated` aliases the routes declare in their signatures."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.errors import Forbidden, NotFound, Unauthorized
from api.generations.models import Generation
from api.security import hash_api_key, secrets_equal
from api.storage import ObjectStore
from api.users.models import ApiKey, User

# auto_error=False: a missing header is our own 401 problem, not FastAPI's 403.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Bearer aa_...`")


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for the request, closed when it ends."""
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_store(request: Request) -> ObjectStore:
    """The object store built at start-up."""
    store: ObjectStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
StorageDep = Annotated[ObjectStore, Depends(get_store)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def bearer_key(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The presented key; 401 when there is none."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    return credentials.credentials


# Built once: every request runs it, and a reused statement keeps its cache key.
USER_BY_KEY_HASH = (
    select(User)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


async def user_for_key(session: AsyncSession, key: str) -> User | None:
    """The user owning a key, found by the key's hash (a unique index)."""
    result = await session.execute(USER_BY_KEY_HASH, {"key_hash": hash_api_key(key)})
    return result.scalar_one_or_none()


async def get_current_user(session: SessionDep, credentials: BearerDep) -> User:
    """The user whose key was presented; 401 for a missing or unknown key."""
    user = await user_for_key(session, bearer_key(credentials))
    if user is None:
        raise Unauthorized("the API key is not valid")
    return user


async def require_admin(settings: SettingsDep, session: SessionDep, credentials: BearerDep) -> None:
    """Pass only the admin key from configuration: 403 for a user's key, 401 for an unknown one."""
    key = bearer_key(credentials)
    if secrets_equal(key, settings.admin_api_key.get_secret_value()):
        return
    if await user_for_key(session, key) is None:
        raise Unauthorized("the API key is not valid")
    raise Forbidden("this endpoint needs the admin key")


CurrentUser = Annotated[User, Depends(get_current_user)]
AdminDep = Annotated[None, Depends(require_admin)]


async def get_owned_generation(
    generation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Generation:
    """The caller's generation; someone else's is as unknown as a missing one (404)."""
    generation = await session.get(Generation, generation_id)
    if generation is None or generation.user_id != user.id:
        raise NotFound(f"no generation {generation_id}")
    return generation


OwnedGeneration = Annotated[Generation, Depends(get_owned_generation)]
