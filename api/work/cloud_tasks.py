"""The Cloud Tasks queue: each job is an HTTP task that posts it back to the API.

The task is named after the job (api.work.QueuedJob.task_id), so enqueuing the same job twice
(a retried call whose first answer was lost, or a re-offer at start-up) is answered "already
exists", which is success. Cloud Tasks holds the task durably, dispatches it within the queue's
rate limits with an OIDC token of WORK_SERVICE_ACCOUNT, and retries it with backoff while the
API answers non-2xx (api.work.router).

google-cloud-tasks is imported only here, and this module only when WORK_QUEUE=cloud_tasks.
Its client is synchronous (requests): calls run in a small pool of threads of their own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import requests
from google.api_core import exceptions as core_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from sqlalchemy import select

from api.config import Settings
from api.db import utcnow
from api.errors import UpstreamUnavailable
from api.generations import lifecycle
from api.generations.models import Generation, GenerationInput
from api.generations.runner import INPUT_GONE, Work
from api.work import QueuedJob, SessionFactory

logger = logging.getLogger(__name__)

# requests keeps 10 pooled connections per host: more threads would open and drop connections.
ENQUEUE_THREADS = 10
RETRY_AFTER_S = 5
# At start-up, stale unfinished async records re-offered to the queue (oldest first), at most.
REOFFER_LIMIT = 1000
# Answers worth another try within the enqueue's time budget: overload, quota, a transient
# server error, or a connection that failed. A 409 on a retry means the first call got through.
TRANSIENT = if_exception_type(
    core_exceptions.TooManyRequests,
    core_exceptions.ServiceUnavailable,
    core_exceptions.InternalServerError,
    core_exceptions.GatewayTimeout,
    core_exceptions.Aborted,
    requests.ConnectionError,
    requests.Timeout,
)


def build_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    """The REST client: Google's endpoint with the service's credentials, or CLOUD_TASKS_ENDPOINT
    (a local fake or emulator) with none."""
    if settings.cloud_tasks_endpoint:
        return tasks_v2.CloudTasksClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.cloud_tasks_endpoint),
        )
    return tasks_v2.CloudTasksClient(transport="rest")


class CloudTasksQueue:
    """Enqueues each job as a named HTTP task with an OIDC token."""

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        *,
        client: tasks_v2.CloudTasksClient | None = None,
    ) -> None:
        if not (settings.cloud_tasks_queue and settings.work_service_account):
            msg = "WORK_QUEUE=cloud_tasks needs CLOUD_TASKS_QUEUE and WORK_SERVICE_ACCOUNT"
            raise ValueError(msg)
        self._queue = settings.cloud_tasks_queue
        self._settings = settings
        self._session_factory = session_factory
        self._client = client or build_client(settings)
        self._executor = ThreadPoolExecutor(ENQUEUE_THREADS, thread_name_prefix="enqueue")
        self._timeout_s = settings.work_enqueue_timeout_s
        self._retry = Retry(
            predicate=TRANSIENT, initial=0.1, maximum=1.0, multiplier=2.0, timeout=self._timeout_s
        )
        self._reoffer: asyncio.Task[None] | None = None

    def task(self, job: QueuedJob) -> dict[str, Any]:
        """The CreateTask request for a job."""
        url = self._settings.work_base_url + job.path
        return {
            "parent": self._queue,
            "task": {
                "name": f"{self._queue}/tasks/{job.task_id}",
                "http_request": {
                    "url": url,
                    "http_method": tasks_v2.HttpMethod.POST,
                    "oidc_token": {
                        "service_account_email": self._settings.work_service_account,
                        "audience": self._settings.work_audience or url,
                    },
                },
                "dispatch_deadline": timedelta(seconds=self._settings.work_dispatch_deadline_s),
            },
        }

    async def enqueue(self, job: QueuedJob, *, work: Work | None = None) -> None:
        request = self.task(job)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._create, request, job)

    def _create(self, request: dict[str, Any], job: QueuedJob) -> None:
        try:
            self._client.create_task(request=request, retry=self._retry, timeout=self._timeout_s)
        except core_exceptions.Conflict as exc:
            if isinstance(exc, core_exceptions.Aborted):
                raise _unavailable(job, exc) from exc
            # ALREADY_EXISTS: this job's task was created before (a retried call, a re-offer).
            return
        except (core_exceptions.GoogleAPIError, requests.RequestException) as exc:
            raise _unavailable(job, exc) from exc

    async def start(self) -> None:
        """In the background, what the in-process sweep did for records no worker touched for a
        stale period: an async one (its upload kept) is offered to the queue again, since a
        process that died between its commit and its enqueue left it with no task; under the
        job's own task name, so a task the queue still holds is not duplicated. A sync one, whose
        upload died with its request, is failed (retryably: its client retries)."""
        self._reoffer = asyncio.create_task(self._reoffer_stale(), name="work-reoffer")

    async def _reoffer_stale(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self._settings.generation_stale_after_s)
        stmt = (
            select(Generation.id, Generation.run, GenerationInput.generation_id.label("kept"))
            .outerjoin(GenerationInput, GenerationInput.generation_id == Generation.id)
            .where(Generation.status.in_(lifecycle.UNFINISHED), Generation.updated_at < cutoff)
            .order_by(Generation.updated_at)
            .limit(REOFFER_LIMIT)
        )
        try:
            async with self._session_factory() as session:
                rows = (await session.execute(stmt)).all()
            orphans = [row.id for row in rows if row.kept is None]
            if orphans:
                async with self._session_factory() as session, session.begin():
                    for generation_id in orphans:
                        await lifecycle.fail(session, generation_id, "upstream_timeout", INPUT_GONE)
            for row in rows:
                if row.kept is not None:
                    await self.enqueue(QueuedJob("generation", row.id, row.run))
        except Exception:
            logger.exception("re-offering stale generations to the work queue failed")
            return
        if rows:
            logger.info(
                "stale unfinished generations: %d offered to the work queue again, %d failed",
                len(rows) - len(orphans),
                len(orphans),
            )

    async def aclose(self) -> None:
        if self._reoffer is not None:
            self._reoffer.cancel()
            await asyncio.gather(self._reoffer, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.transport.close()  # type: ignore[no-untyped-call]


def _unavailable(job: QueuedJob, exc: Exception) -> UpstreamUnavailable:
    logger.warning("the work queue refused job %s: %s", job.task_id, type(exc).__name__)
    return UpstreamUnavailable(
        "the work queue is unavailable; please try again", retry_after_s=RETRY_AFTER_S
    )
