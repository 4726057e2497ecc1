"""The animal catalogue: what the compositors draw, and the words the Vertex prompt uses.

The API, deployed apart, shows the same list at /v1/animals from its own copy
(api/animals.py), and keeps the same render styles; tests/contract fails when the two drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Animal:
    id: str
    name: str
    description: str


ANIMALS: tuple[Animal, ...] = (
    Animal("cat", "Cat", "Pointed ears, pink nose, whiskers and soft tabby stripes."),
    Animal("dog", "Dog", "Floppy ears, a big black nose and a friendly muzzle."),
    Animal("fox", "Fox", "Tall orange ears, a white muzzle and a sharp black nose."),
    Animal("bear", "Bear", "Round ears, a tan muzzle and warm brown fur."),
    Animal("rabbit", "Rabbit", "Long upright ears, a twitchy pink nose and buck teeth."),
    Animal("panda", "Panda", "Black round ears and the classic black eye patches."),
    Animal("tiger", "Tiger", "Orange fur, bold black stripes and a white muzzle."),
    Animal("raccoon", "Raccoon", "Grey fur, a black bandit mask and pale ears."),
    Animal("mouse", "Mouse", "Big round pink-lined ears, a tiny pink nose and long whiskers."),
    Animal("koala", "Koala", "Fluffy round grey ears, a big dark nose and a white chin."),
)

ANIMAL_IDS: frozenset[str] = frozenset(a.id for a in ANIMALS)

# How the local compositor draws an animal (the request's optional `style`): `character`, a
# stylised animal head in place of the face, posed and animated by it; `paint`, markings, ears
# and nose on the face itself. The gcp compositor ignores it. The API keeps the same list
# (api/animals.py; tests/contract).
RENDER_STYLES: tuple[str, ...] = ("character", "paint")
DEFAULT_STYLE = "character"


def get_animal(animal_id: str) -> Animal | None:
    """The catalogue entry for an id (case-insensitive), or None."""
    needle = animal_id.strip().lower()
    return next((a for a in ANIMALS if a.id == needle), None)
