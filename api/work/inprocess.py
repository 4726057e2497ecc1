"""The in-process queue: jobs run as tasks of the API process (one machine, `make run`).

Their state is in the database: a pending record keeps its upload, so start-up recovery resumes
what a stopped process left, and a sweep every half stale period resumes or fails work whose
process died while another one kept running (api.generations.runner).
"""

from __future__ import annotations

import asyncio
import logging

from api.generations.runner import GenerationRunner, Job, Work
from api.work import QueuedJob

logger = logging.getLogger(__name__)


class InProcessQueue:
    """Runs each job at once in this process, through the generation runner."""

    def __init__(self, runner: GenerationRunner) -> None:
        self._runner = runner
        self._sweeper: asyncio.Task[None] | None = None

    async def enqueue(self, job: QueuedJob, *, work: Work | None = None) -> None:
        if job.kind == "webhook":
            raise ValueError(f"the in-process queue has no handler for {job.kind!r} jobs")
        if work is None:  # not in hand: the records say what to do
            self._runner.submit((await self._runner.sight(job.kind, job.id)).job())
            return
        # A job is enqueued right after its records were written pending: no attempt yet.
        self._runner.submit(Job.fresh(job.kind, job.id, work.request.generation_ids), work)

    async def start(self) -> None:
        try:
            await self._runner.recover(on_start=True)
        except Exception:
            # A database that is not up yet must not keep the API down; the sweep retries later.
            logger.exception("start-up recovery of unfinished generations failed")
        self._sweeper = asyncio.create_task(self._runner.sweep_forever(), name="generation-sweep")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
