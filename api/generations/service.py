"""Generation history: list, read, delete, and the public form of a record."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.generations.models import Generation, GenerationStatus
from api.generations.schemas import GenerationError, GenerationPublic
from api.pagination import keyset_page, split_page
from api.storage import ObjectStore


async def list_generations(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[Sequence[Generation], str | None]:
    """One page of the user's history, newest first."""
    stmt = select(Generation).where(Generation.user_id == user_id)
    stmt = keyset_page(stmt, Generation.created_at, Generation.id, cursor=cursor, limit=limit)
    rows = (await session.execute(stmt)).scalars().all()
    return split_page(rows, limit)


async def delete_generation(
    session: AsyncSession, store: ObjectStore, generation: Generation
) -> None:
    """Delete the stored image, then the record."""
    # Image first: if that fails the record stays, so the user can see it and retry.
    if generation.object_name:
        await store.delete(generation.object_name)
    await session.execute(delete(Generation).where(Generation.id == generation.id))
    await session.commit()


async def to_public(
    generation: Generation, store: ObjectStore, settings: Settings
) -> GenerationPublic:
    """The record as the API shows it, with a freshly signed image link."""
    image_url = None
    if generation.status is GenerationStatus.succeeded and generation.object_name:
        image_url = await store.signed_url(generation.object_name, settings.signed_url_ttl_s)
    error = None
    if generation.error_code:
        error = GenerationError(code=generation.error_code, detail=generation.error_detail)
    return GenerationPublic(
        id=generation.id,
        status=generation.status,
        animal=generation.animal,
        image_url=image_url,
        error=error,
        faces=generation.faces or [],
        created_at=generation.created_at,
        completed_at=generation.completed_at,
    )


async def to_public_many(
    generations: Sequence[Generation], store: ObjectStore, settings: Settings
) -> list[GenerationPublic]:
    """Public forms of many records, their links signed concurrently."""
    return list(await asyncio.gather(*(to_public(g, store, settings) for g in generations)))
