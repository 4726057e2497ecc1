"""/v1/packs: one upload, several animals (sync 201 or async 202), and one pack to read."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from api.animals import CATALOGUE_ORDER, STYLE_FIELD
from api.config import Settings
from api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from api.generations.presenter import to_public_many
from api.generations.router import answer_unfinished, intake_of
from api.generations.service import Intake
from api.packs import service
from api.packs.schemas import PackPublic
from api.problems import problem_responses
from api.storage import ObjectStore

router = APIRouter(prefix="/v1/packs", tags=["packs"])

# `all`, or catalogue ids joined by commas (that each is named once, a pattern cannot say).
_ANIMAL = f"(?:{'|'.join(CATALOGUE_ORDER)})"
ANIMALS_PATTERN = f"^(?:all|{_ANIMAL}(?:,{_ANIMAL})*)$"

PACK_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "animals"],
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "JPEG, PNG, WebP or HEIC",
                    },
                    "animals": {
                        "type": "string",
                        "description": (
                            "a comma list of ids from GET /v1/animals (each once), or `all`; "
                            "each animal counts against the rate limit"
                        ),
                        "pattern": ANIMALS_PATTERN,
                        "examples": ["fox,panda,cat", "all"],
                    },
                    "style": STYLE_FIELD,  # one for every animal of the pack
                },
            },
            "encoding": {"image": {"contentType": "image/jpeg, image/png, image/webp, image/heic"}},
        }
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": PACK_BODY},
    responses={
        202: {"model": PackPublic, "description": "Accepted; poll `Location`."},
        **problem_responses(400, 401, 409, 413, 415, 422, 429, 503, 504),
    },
)
async def create_pack(
    response: Response,
    intake: Annotated[Intake, Depends(intake_of(several=True))],
    store: StorageDep,
) -> PackPublic:
    """One selfie, several animals: the face is found once and each animal is a generation
    (in the history too, with `pack_id`). 201 with the finished pack (`succeeded`, or
    `partial` when some animals failed), or with `Prefer: respond-async` 202 and poll
    `Location`. The whole pack fits the rate limit or none of it is made (429)."""
    view = await service.create_pack(intake)
    if view.status not in ("succeeded", "partial"):
        answer_unfinished(response, f"{router.prefix}/{view.pack.id}", intake)
    return await to_public(view, store, intake.settings)


@router.get("/{pack_id}", responses=problem_responses(401, 404, 422, 503))
async def read_pack(
    pack_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
) -> PackPublic:
    """One of the caller's packs, with its generations (someone else's is 404)."""
    return await to_public(await service.get_pack(session, user.id, pack_id), store, settings)


async def to_public(view: service.PackView, store: ObjectStore, settings: Settings) -> PackPublic:
    """The pack as the API shows it, each generation with a freshly signed image link."""
    return PackPublic(
        id=view.pack.id,
        status=view.status,
        animals=list(view.pack.animals),
        style=view.style,
        generations=await to_public_many(view.generations, store, settings),
        created_at=view.pack.created_at,
        completed_at=view.completed_at,
    )
