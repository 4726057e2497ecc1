"""/v1/animals: the catalogue the compositors draw from (one list, shared with the function)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from avatar.catalogue import ANIMALS

router = APIRouter(prefix="/v1/animals", tags=["animals"])


class AnimalPublic(BaseModel):
    id: str
    name: str
    description: str


@router.get("")
async def list_animals() -> list[AnimalPublic]:
    """Every animal a selfie can become; pass its `id` as `animal`."""
    return [AnimalPublic(id=a.id, name=a.name, description=a.description) for a in ANIMALS]
