"""POST /internal/work/{kind}/{id}: the queue hands one job to the API (Cloud Tasks only).

The answer tells Cloud Tasks what to do with the task: 2xx, done (the job finished now, had
finished before, or its record is gone); 503, deliver it again later (a retryable failure with
attempts left, or another worker's attempt still fresh); 401/403, a caller that is not the
queue, and nothing ran. With the in-process queue there is no such endpoint: 404.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, cast, get_args

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from api.deps import SettingsDep
from api.errors import NotFound, UpstreamUnavailable
from api.generations.models import GenerationStatus
from api.generations.runner import GenerationRunner, WorkKind
from api.problems import problem_responses
from api.work import job_url, token_audience

if TYPE_CHECKING:  # the module loads `cryptography`: only with WORK_QUEUE=cloud_tasks
    from api.work.oidc import OidcVerifier

router = APIRouter(prefix="/internal/work", tags=["internal"])

RETRY_AFTER_S = 10
# The kinds of job with a handler here.
HANDLED = frozenset(get_args(WorkKind))


class JobDone(BaseModel):
    """A job the queue may forget: how its record stands (`gone` when it was deleted)."""

    kind: str
    id: uuid.UUID
    status: str | None


@router.post(
    "/{kind}/{job_id}",
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Run one queued job (Cloud Tasks only)",
)
async def run_job(
    kind: str,
    job_id: str,
    request: Request,
    settings: SettingsDep,
    retry_count: Annotated[
        int, Header(alias="X-CloudTasks-TaskRetryCount", ge=0, include_in_schema=False)
    ] = 0,
) -> JobDone:
    """Run a generation (or webhook delivery) the work queue dispatched, with a Google OIDC
    token of the queue's service account for this URL. Not for clients."""
    if settings.work_queue != "cloud_tasks":
        raise NotFound("no such route: jobs run in the API process (WORK_QUEUE=inprocess)")
    verifier: OidcVerifier = request.app.state.oidc_verifier
    assert settings.work_service_account  # Settings requires it with cloud_tasks
    await verifier.verify(
        request.headers.get("authorization"),
        audience=token_audience(settings, job_url(settings, kind, job_id)),
        email=settings.work_service_account,
    )
    identifier = _job_id(job_id)
    if kind not in HANDLED:
        raise NotFound(f"no {kind!r} jobs here")
    runner: GenerationRunner = request.app.state.runner
    status = await runner.run_delivered(
        cast(WorkKind, kind),
        identifier,
        retry_count=retry_count,
        max_attempts=settings.work_max_attempts,
    )
    if status in (GenerationStatus.pending, GenerationStatus.processing):
        raise UpstreamUnavailable(
            "the job did not finish and will be delivered again", retry_after_s=RETRY_AFTER_S
        )
    return JobDone(kind=kind, id=identifier, status=status)


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no job {value!r}") from None
