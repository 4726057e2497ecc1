"""How a generation record is shown: the public form with a freshly signed link, and the error a
failed record answers with."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter

from api.config import Settings
from api.errors import ApiError
from api.forwarding.client import DEFAULT_RETRY_AFTER_S
from api.generations.models import Generation, GenerationStatus
from api.generations.schemas import GenerationPublic
from api.storage import ObjectStore

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
    Generation.style,
    Generation.pack_id,
    Generation.created_at,
    Generation.completed_at,
)


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
    def style(self) -> str: ...
    @property
    def pack_id(self) -> uuid.UUID | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def completed_at(self) -> datetime | None: ...


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
        "style": generation.style,
        "pack_id": generation.pack_id,
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


def failure_of(generation: GenerationView) -> ApiError:
    """The error a failed record answers with (problem+json), the same as when it failed."""
    code = generation.error_code or "upstream_unavailable"
    retry_after = DEFAULT_RETRY_AFTER_S if code == "upstream_unavailable" else None
    return ApiError.from_code(code, generation.error_detail or code, retry_after_s=retry_after)
