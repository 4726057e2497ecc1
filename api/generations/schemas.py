"""What the generations endpoints return."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from api.animals import Style
from api.generations.models import GenerationStatus
from api.problems import ProblemCode


class GenerationError(BaseModel):
    code: ProblemCode
    detail: str | None


class Point(BaseModel):
    """A point in the uploaded image's pixels."""

    x: float
    y: float


class Box(BaseModel):
    """A face's bounding box in the uploaded image's pixels."""

    x: float
    y: float
    width: float
    height: float


class Face(BaseModel):
    """A face the function found: box, named landmarks (subject's left/right), confidence."""

    box: Box
    landmarks: dict[str, Point]
    confidence: float
    roll_deg: float | None = None


class GenerationPublic(BaseModel):
    """A generation record; `image_url` is a fresh, expiring link, null until it succeeded;
    `style` is how the animal is drawn (`character` or `paint`); `pack_id` names the pack it is
    one animal of (null for a single upload)."""

    id: uuid.UUID
    status: GenerationStatus
    animal: str
    image_url: str | None
    error: GenerationError | None
    faces: list[Face]
    style: Style
    pack_id: uuid.UUID | None = None
    created_at: datetime
    completed_at: datetime | None
