"""/v1/animals: the catalogue a selfie can become.

The function draws these animals and has the same list on its side (avatar.catalogue); the
two are separate deploys, so tests/contract checks that they name the same animals (and the
same render styles).
"""

from __future__ import annotations

from typing import Literal, get_args

from fastapi import APIRouter
from pydantic import BaseModel


class AnimalPublic(BaseModel):
    id: str
    name: str
    description: str


# (id, name, description), in the order the catalogue is shown.
_CATALOGUE = (
    ("cat", "Cat", "Pointed ears, pink nose, whiskers and soft tabby stripes."),
    ("dog", "Dog", "Floppy ears, a big black nose and a friendly muzzle."),
    ("fox", "Fox", "Tall orange ears, a white muzzle and a sharp black nose."),
    ("bear", "Bear", "Round ears, a tan muzzle and warm brown fur."),
    ("rabbit", "Rabbit", "Long upright ears, a twitchy pink nose and buck teeth."),
    ("panda", "Panda", "Black round ears and the classic black eye patches."),
    ("tiger", "Tiger", "Orange fur, bold black stripes and a white muzzle."),
    ("raccoon", "Raccoon", "Grey fur, a black bandit mask and pale ears."),
    ("mouse", "Mouse", "Big round pink-lined ears, a tiny pink nose and long whiskers."),
    ("koala", "Koala", "Fluffy round grey ears, a big dark nose and a white chin."),
)
ANIMALS = tuple(AnimalPublic(id=i, name=n, description=d) for i, n, d in _CATALOGUE)
ANIMAL_IDS: frozenset[str] = frozenset(a.id for a in ANIMALS)
CATALOGUE_ORDER: tuple[str, ...] = tuple(a.id for a in ANIMALS)


# How an animal is drawn (an upload's optional `style`), the function's RENDER_STYLES.
Style = Literal["character", "paint"]
STYLES: tuple[str, ...] = get_args(Style)
DEFAULT_STYLE: Style = "character"
# The `style` field as the upload forms document it (OpenAPI).
STYLE_FIELD: dict[str, object] = {
    "type": "string",
    "enum": list(STYLES),
    "default": DEFAULT_STYLE,
    "description": (
        "how the animal is drawn: `character`: a stylised animal head drawn in place of the "
        "face; `paint`: markings, ears and nose on the face"
    ),
}


def animal_id(value: str) -> str | None:
    """The catalogue id a request names (trimmed, any case), or None if it names none."""
    needle = value.strip().lower()
    return needle if needle in ANIMAL_IDS else None


def style_id(value: str) -> str | None:
    """The render style a request names (trimmed, any case), or None if it names none."""
    needle = value.strip().lower()
    return needle if needle in STYLES else None


router = APIRouter(prefix="/v1/animals", tags=["animals"])


@router.get("")
async def list_animals() -> list[AnimalPublic]:
    """Every animal a selfie can become; pass its `id` as `animal`."""
    return list(ANIMALS)
