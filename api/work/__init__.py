"""The work queue: where a job (an async generation or pack, or a webhook delivery's attempt)
waits and runs.

`WORK_QUEUE=inprocess` (the default): jobs are tasks of this process, resumed from the database
after a restart (api.work.inprocess). `WORK_QUEUE=cloud_tasks`: each job is a Google Cloud Task
that posts it back to `POST /internal/work/{kind}/{id}` with an OIDC token
(api.work.cloud_tasks, api.work.router). Either way the database stays the truth: a job is a
kind and an id, and its handler reads what to do from the record.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from api.config import Settings
from api.generations.runner import GenerationRunner, Work

if TYPE_CHECKING:
    from api.webhooks.delivery import Deliverer

logger = logging.getLogger(__name__)

JobKind = Literal["generation", "pack", "webhook"]


@dataclass(frozen=True)
class QueuedJob:
    """A job of the queue: its kind, the id of its record, and the record's run (a generation
    retried with its Idempotency-Key is a new run, so a new task; for a webhook delivery, the
    attempts it has had: each attempt is a task of its own)."""

    kind: JobKind
    id: uuid.UUID
    run: int = 0
    # Not to run before then (a webhook delivery's next attempt); None: at once.
    not_before: datetime | None = None

    @property
    def task_id(self) -> str:
        """The job's task name in the queue: the same job always gets the same one.

        The random id comes first: Cloud Tasks spreads names by their prefix, and names that
        share one (`generation-...`) would crowd one shard. A job due later (a webhook's next
        attempt) also names its time in milliseconds.
        """
        name = f"{self.id}-{self.kind}-{self.run}"
        if self.not_before is None:
            return name
        return f"{name}-{int(self.not_before.timestamp() * 1000)}"


def job_url(settings: Settings, kind: str, job_id: uuid.UUID | str) -> str:
    """Where the queue posts a job on the API."""
    return f"{settings.work_base_url}/internal/work/{kind}/{job_id}"


def token_audience(settings: Settings, url: str) -> str:
    """The audience of the queue's OIDC token for a job's URL: WORK_AUDIENCE, else the URL."""
    return settings.work_audience or url


class WorkQueue(Protocol):
    """Where jobs wait until they run. `enqueue` returns once the job is durably queued (or
    running here); it raises api.errors.UpstreamUnavailable when the queue cannot take it."""

    async def enqueue(self, job: QueuedJob, *, work: Work | None = None) -> None:
        """Queue a job whose record is committed. `work`: what the job needs, already in hand
        (the in-process queue runs it without reading the record back; others ignore it)."""
        ...

    async def start(self) -> None:
        """Begin: resume what an earlier process left unfinished."""
        ...

    async def aclose(self) -> None:
        """Stop taking jobs and release what the queue holds (threads, connections)."""
        ...


async def announce(queue: WorkQueue, delivery_ids: Iterable[uuid.UUID]) -> None:
    """Hand webhook deliveries just committed to the queue. Best effort: one the queue did not
    take is still pending in the database, where the sweep (in-process) or the next start's
    re-offer (Cloud Tasks) finds it."""
    for delivery_id in delivery_ids:
        try:
            await queue.enqueue(QueuedJob("webhook", delivery_id))
        except Exception as exc:
            logger.warning(
                "webhook delivery %s was not queued (%s); it waits in the database",
                delivery_id,
                type(exc).__name__,
            )


def build_queue(settings: Settings, runner: GenerationRunner, deliverer: Deliverer) -> WorkQueue:
    """The queue WORK_QUEUE names; Cloud Tasks' client is imported only when it is chosen."""
    if settings.work_queue == "cloud_tasks":
        from api.work.cloud_tasks import CloudTasksQueue

        return CloudTasksQueue(settings, runner, deliverer)
    from api.work.inprocess import InProcessQueue

    return InProcessQueue(settings, runner, deliverer)
