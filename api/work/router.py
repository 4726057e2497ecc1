"""POST /internal/work/{kind}/{id}: the queue hands one job to the API (Cloud Tasks only).

The answer tells Cloud Tasks what to do with the task: 2xx, done (the job finished now, had
finished before, or its record is gone); 503, deliver it again later (a retryable failure with
attempts left, or another worker's attempt still fresh); 401/403, a caller that is not the
queue, and nothing ran. With the in-process queue there is no such endpoint: 404.

A webhook delivery's task is one attempt. The schedule of its retries is the delivery's own
(SPEC: about 5 s, 30 s, 2 min ... 6 h), not the queue's: an attempt that fails enqueues the next
one as a new task, named after the attempts made and due at its time, then answers 200. Only
when that enqueue fails is the answer 503, so Cloud Tasks delivers this task again, which
enqueues it then. Each task's name carries the time it is due, so a re-offer of the same
attempt is not queued twice, and a later time is a new task.
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
from api.webhooks.models import DeliveryStatus
from api.work import JobKind, QueuedJob, WorkQueue, job_url, token_audience

if TYPE_CHECKING:  # the module loads `cryptography`: only with WORK_QUEUE=cloud_tasks
    from api.webhooks.delivery import Deliverer
    from api.work.oidc import OidcVerifier

router = APIRouter(prefix="/internal/work", tags=["internal"])

RETRY_AFTER_S = 10
# The kinds of job with a handler here.
HANDLED = frozenset(get_args(JobKind))
# Cloud Tasks may dispatch a little before the time the API computed (clocks differ): an
# attempt that is due within this is made.
EARLY_S = 5.0


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
    if kind == "webhook":
        return await _attempt_delivery(request, identifier)
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


async def _attempt_delivery(request: Request, delivery_id: uuid.UUID) -> JobDone:
    """Make a webhook delivery's attempt if it is due, then make sure its next one is queued."""
    deliverer: Deliverer = request.app.state.deliverer
    queue: WorkQueue = request.app.state.work_queue
    attempted = await deliverer.attempt(delivery_id, early_s=EARLY_S)
    if attempted.pending:
        # Whether this task made the attempt, came early, or found another worker's under way
        # (then `next_attempt_at` is that attempt's lease): the task for the time the delivery
        # is due next. Named after that time, so it is queued once however often it is asked.
        await queue.enqueue(
            QueuedJob("webhook", delivery_id, attempted.attempts, attempted.next_attempt_at)
        )
    status = attempted.status.value if isinstance(attempted.status, DeliveryStatus) else None
    return JobDone(kind="webhook", id=delivery_id, status=status)


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no job {value!r}") from None
