"""/v1/users: sign-up, own profile, erasure, and the admin list."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminDep, CurrentUser, SessionDep, StorageDep
from api.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page
from api.problems import problem_responses
from api.users import service
from api.users.schemas import UserCreate, UserCreated, UserPublic

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 409, 413, 422, 503),
)
async def create_user(data: UserCreate, session: SessionDep) -> UserCreated:
    """Create a user; the response carries the API key, which is shown only this once."""
    user, key = await service.create_user(session, data)
    return UserCreated(**UserPublic.model_validate(user).model_dump(), api_key=key)


@router.get("/me", responses=problem_responses(401, 503))
async def read_me(user: CurrentUser) -> UserPublic:
    """The caller's profile."""
    return UserPublic.model_validate(user)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 503))
async def delete_me(user: CurrentUser, session: SessionDep, store: StorageDep) -> None:
    """Erase the caller: profile, keys, generation history and every stored image."""
    await service.delete_user(session, store, user)


@router.get("", responses=problem_responses(401, 403, 422, 503))
async def list_users(
    _: AdminDep, session: SessionDep, limit: LimitQuery = DEFAULT_LIMIT, cursor: CursorQuery = None
) -> Page[UserPublic]:
    """Every user, newest first (admin key only)."""
    rows, next_cursor = await service.list_users(session, cursor=cursor, limit=limit)
    return Page(items=[UserPublic.model_validate(u) for u in rows], next_cursor=next_cursor)
