"""The work queue: where a job (an async generation or pack, later a webhook delivery) waits
and runs.

`WORK_QUEUE=inprocess` (the default): jobs are tasks of this process, resumed from the database
after a restart (api.work.inprocess). `WORK_QUEUE=cloud_tasks`: each job is a Google Cloud Task
that posts it back to `POST /internal/work/{kind}/{id}` with an OIDC token
(api.work.cloud_tasks, api.work.router). Either way the database stays the truth: a job is a
kind and an id, and its handler reads what to do from the record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from api.config import Settings
from api.generations.runner import GenerationRunner, Work

JobKind = Literal["generation", "pack", "webhook"]


@dataclass(frozen=True)
class QueuedJob:
    """A job of the queue: its kind, the id of its record, and the record's run (a generation
    retried with its Idempotency-Key is a new run, so a new task)."""

    kind: JobKind
    id: uuid.UUID
    run: int = 0

    @property
    def task_id(self) -> str:
        """The job's task name in the queue: the same job always gets the same one.

        The random id comes first: Cloud Tasks spreads names by their prefix, and names that
        share one (`generation-...`) would crowd one shard.
        """
        return f"{self.id}-{self.kind}-{self.run}"


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


def build_queue(settings: Settings, runner: GenerationRunner) -> WorkQueue:
    """The queue WORK_QUEUE names; Cloud Tasks' client is imported only when it is chosen."""
    if settings.work_queue == "cloud_tasks":
        from api.work.cloud_tasks import CloudTasksQueue

        return CloudTasksQueue(settings, runner)
    from api.work.inprocess import InProcessQueue

    return InProcessQueue(runner)
