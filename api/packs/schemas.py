"""What the packs endpoints return."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

from api.animals import Style
from api.generations.schemas import GenerationPublic

PackStatus = Literal["pending", "processing", "succeeded", "partial", "failed"]

_PACK_ID = "0b6f7c1e-8d2a-4c55-9a31-3f1e2d4c5b6a"
_EXAMPLE: dict[str, Any] = {
    "id": _PACK_ID,
    "status": "partial",
    "animals": ["fox", "panda"],
    "style": "character",
    "generations": [
        {
            "id": "5a1c2e3f-4b5d-4e6f-8a7b-9c0d1e2f3a4b",
            "status": "succeeded",
            "animal": "fox",
            "image_url": "https://storage.googleapis.com/avatars-bucket/avatars/...?X-Goog-Signature=...",
            "error": None,
            "faces": [
                {
                    "box": {"x": 412.0, "y": 188.0, "width": 301.0, "height": 301.0},
                    "landmarks": {"nose_tip": {"x": 561.0, "y": 352.0}},
                    "confidence": 0.98,
                    "roll_deg": -2.5,
                }
            ],
            "style": "character",
            "pack_id": _PACK_ID,
            "created_at": "2026-11-30T09:15:02.120000Z",
            "completed_at": "2026-11-30T09:15:03.480000Z",
        },
        {
            "id": "6b2d3f40-5c6e-4f70-9b8c-0d1e2f3a4b5c",
            "status": "failed",
            "animal": "panda",
            "image_url": None,
            "error": {
                "code": "content_blocked",
                "detail": "the image model refused to draw it (IMAGE_SAFETY)",
            },
            "faces": [],
            "style": "character",
            "pack_id": _PACK_ID,
            "created_at": "2026-11-30T09:15:02.120000Z",
            "completed_at": "2026-11-30T09:15:03.480000Z",
        },
    ],
    "created_at": "2026-11-30T09:15:02.120000Z",
    "completed_at": "2026-11-30T09:15:03.480000Z",
}


class PackPublic(BaseModel):
    """One upload made into several animals: a generation per animal, in the order asked for.

    `status` is derived from the generations: `pending` until work starts, `processing` while
    any is unfinished, then `succeeded` (all did), `partial` (some failed) or `failed` (all
    did). `style` is how every animal of the pack is drawn. `completed_at` is when the last one
    finished.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [cast(JsonDict, _EXAMPLE)]})

    id: uuid.UUID
    status: PackStatus
    animals: list[str]
    style: Style
    generations: list[GenerationPublic]
    created_at: datetime
    completed_at: datetime | None
