"""/v1/generations: create (sync 201 or async 202), the caller's history, one record, delete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status

from api.animals import CATALOGUE_ORDER, STYLE_FIELD
from api.deps import CurrentUser, OwnedGeneration, SessionDep, SettingsDep, StorageDep
from api.generations import service
from api.generations.models import GenerationStatus
from api.generations.presenter import to_public, to_public_many
from api.generations.runner import GenerationRunner
from api.generations.schemas import GenerationPublic
from api.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page
from api.problems import problem_responses
from api.uploads import read_upload
from api.work import WorkQueue

router = APIRouter(prefix="/v1/generations", tags=["generations"])


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retry with the same key and body to get the same record back.",
    ),
]
Prefer = Annotated[
    str | None,
    Header(description="`respond-async`: answer 202 at once and work in the background."),
]
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "animal"],
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "JPEG, PNG, WebP or HEIC",
                    },
                    "animal": {
                        "type": "string",
                        "enum": list(CATALOGUE_ORDER),
                        "description": "an id from GET /v1/animals (once)",
                    },
                    "style": STYLE_FIELD,
                },
            }
        }
    },
}


async def get_runner(request: Request) -> GenerationRunner:
    """The background runner built at start-up."""
    runner: GenerationRunner = request.app.state.runner
    return runner


RunnerDep = Annotated[GenerationRunner, Depends(get_runner)]


async def get_queue(request: Request) -> WorkQueue:
    """The work queue built at start-up (api.work)."""
    queue: WorkQueue = request.app.state.work_queue
    return queue


QueueDep = Annotated[WorkQueue, Depends(get_queue)]


def wants_async(prefer: str | None) -> bool:
    """Whether a Prefer header asks for respond-async (RFC 7240)."""
    tokens = (part.split(";")[0].strip().lower() for part in (prefer or "").split(","))
    return "respond-async" in tokens


def intake_of(*, several: bool) -> Callable[..., Awaitable[service.Intake]]:
    """The dependency that gathers an upload request (a generation's, or with `several` a
    pack's) for the service: its user, headers and body reader, and what taking it on needs."""

    async def get_intake(
        request: Request,
        user: CurrentUser,
        session: SessionDep,
        settings: SettingsDep,
        runner: RunnerDep,
        queue: QueueDep,
        idempotency_key: IdempotencyKey = None,
        prefer: Prefer = None,
    ) -> service.Intake:
        return service.Intake(
            session=session,
            settings=settings,
            runner=runner,
            queue=queue,
            user_id=user.id,
            read_upload=lambda fingerprint: read_upload(
                request, settings, fingerprint=fingerprint, several=several
            ),
            idempotency_key=idempotency_key,
            respond_async=wants_async(prefer),
        )

    return get_intake


def answer_unfinished(response: Response, location: str, intake: service.Intake) -> None:
    """202 and where to poll, for a record (or pack) not finished when answered."""
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = location
    if intake.respond_async:
        response.headers["Preference-Applied"] = "respond-async"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        202: {"model": GenerationPublic, "description": "Accepted; poll `Location`."},
        **problem_responses(400, 401, 409, 413, 415, 422, 429, 503, 504),
    },
)
async def create_generation(
    response: Response,
    intake: Annotated[service.Intake, Depends(intake_of(several=False))],
    store: StorageDep,
) -> GenerationPublic:
    """Turn a selfie into an animal character: 201 with the finished record, or 202 and poll."""
    generation = await service.create_generation(intake)
    if generation.status is not GenerationStatus.succeeded:
        answer_unfinished(response, f"{router.prefix}/{generation.id}", intake)
    return await to_public(generation, store, intake.settings)


@router.get("", responses=problem_responses(401, 422, 503))
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
    items = await to_public_many(rows, store, settings)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{generation_id}", responses=problem_responses(401, 404, 422, 503))
async def read_generation(
    generation: OwnedGeneration, store: StorageDep, settings: SettingsDep
) -> GenerationPublic:
    """One of the caller's generations."""
    return await to_public(generation, store, settings)


@router.delete(
    "/{generation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 422, 503),
)
async def delete_generation(
    generation: OwnedGeneration, session: SessionDep, store: StorageDep
) -> None:
    """Delete one of the caller's generations and its stored image."""
    await service.delete_generation(session, store, generation)
