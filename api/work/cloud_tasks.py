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
from functools import partial
from typing import Any

import requests
from google.api_core import exceptions as core_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2

from api.config import Settings
from api.errors import UpstreamUnavailable
from api.generations.runner import GenerationRunner, Work, with_db_retry
from api.observability import tracing
from api.webhooks.delivery import Deliverer
from api.work import QueuedJob, job_url, token_audience

logger = logging.getLogger(__name__)

# requests keeps 10 pooled connections per host: more threads would open and drop connections.
ENQUEUE_THREADS = 10
RETRY_AFTER_S = 5
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
        runner: GenerationRunner,
        deliverer: Deliverer,
        *,
        client: tasks_v2.CloudTasksClient | None = None,
    ) -> None:
        # Settings refuses WORK_QUEUE=cloud_tasks without them.
        assert settings.cloud_tasks_queue is not None
        assert settings.work_service_account is not None
        self._queue = settings.cloud_tasks_queue
        self._settings = settings
        self._runner = runner
        self._deliverer = deliverer
        self._client = client or build_client(settings)
        self._executor = ThreadPoolExecutor(ENQUEUE_THREADS, thread_name_prefix="enqueue")
        self._timeout_s = settings.work_enqueue_timeout_s
        self._retry = Retry(
            predicate=TRANSIENT, initial=0.1, maximum=1.0, multiplier=2.0, timeout=self._timeout_s
        )
        self._reoffer: asyncio.Task[None] | None = None

    def task(self, job: QueuedJob) -> dict[str, Any]:
        """The CreateTask request for a job."""
        url = job_url(self._settings, job.kind, job.id)
        task: dict[str, Any] = {
            "name": f"{self._queue}/tasks/{job.task_id}",
            "http_request": {
                "url": url,
                "http_method": tasks_v2.HttpMethod.POST,
                "oidc_token": {
                    "service_account_email": self._settings.work_service_account,
                    "audience": token_audience(self._settings, url),
                },
            },
            "dispatch_deadline": timedelta(seconds=self._settings.work_dispatch_deadline_s),
        }
        # The job runs under the trace of the request that queued it (its log lines share it).
        headers = tracing.outgoing_headers()
        if headers:
            task["http_request"]["headers"] = headers
        if job.not_before is not None:
            task["schedule_time"] = job.not_before
        return {"parent": self._queue, "task": task}

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
        upload died with its request, is failed (retryably: its client retries). Webhook
        deliveries that are due are offered again too (under the name of their next attempt),
        and the delivery log is pruned."""
        self._reoffer = asyncio.create_task(self._reoffer_stale(), name="work-reoffer")

    async def _reoffer_stale(self) -> None:
        try:
            records = await with_db_retry(partial(self._runner.unfinished, on_start=False))
            # The database's part first: an enqueue waits on the network.
            for record in records:
                if not record.kept_input:
                    await with_db_retry(partial(self._runner.abandon, record.job))
            for record in records:
                if record.kept_input:
                    await self.enqueue(QueuedJob(record.job.kind, record.job.id, record.run))
        except Exception:
            logger.exception("re-offering stale generations to the work queue failed")
            return
        if records:
            logger.info("%d stale unfinished jobs offered again or failed", len(records))
        try:
            due = await with_db_retry(self._deliverer.due)
            for delivery_id, attempts in due:
                await self.enqueue(QueuedJob("webhook", delivery_id, attempts))
            await with_db_retry(self._deliverer.prune)
        except Exception:
            logger.exception("re-offering due webhook deliveries to the work queue failed")
            return
        if due:
            logger.info("%d due webhook deliveries offered again", len(due))

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
