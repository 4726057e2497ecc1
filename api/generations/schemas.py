"""What the generations endpoints return."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from api.generations.models import GenerationStatus


class GenerationError(BaseModel):
    code: str
    detail: str | None


class GenerationPublic(BaseModel):
    """A generation record; `image_url` is a fresh, expiring link, null until it succeeded."""

    id: uuid.UUID
    status: GenerationStatus
    animal: str
    image_url: str | None
    error: GenerationError | None
    faces: list[dict[str, Any]]
    created_at: datetime
    completed_at: datetime | None
