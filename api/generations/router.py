"""/v1/generations: the caller's history (the creating side arrives with the function client)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CurrentUser, OwnedGeneration, SessionDep, SettingsDep, StorageDep
from api.errors import UpstreamUnavailable
from api.generations import service
from api.generations.schemas import GenerationPublic
from api.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page

router = APIRouter(prefix="/v1/generations", tags=["generations"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_generation(user: CurrentUser) -> GenerationPublic:
    """Turn a selfie into an animal character (not wired to the function yet: 503)."""
    raise UpstreamUnavailable("image generation is not available yet", retry_after_s=60)


@router.get("")
async def list_generations(
    user: CurrentUser,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[GenerationPublic]:
    """The caller's generations, newest first; follow `next_cursor` for older ones."""
    rows, next_cursor = await service.list_generations(session, user.id, cursor=cursor, limit=limit)
    items = await service.to_public_many(rows, store, settings)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{generation_id}")
async def read_generation(
    generation: OwnedGeneration, store: StorageDep, settings: SettingsDep
) -> GenerationPublic:
    """One of the caller's generations."""
    return await service.to_public(generation, store, settings)


@router.delete("/{generation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_generation(
    generation: OwnedGeneration, session: SessionDep, store: StorageDep
) -> None:
    """Delete one of the caller's generations and its stored image."""
    await service.delete_generation(session, store, generation)
