"""The in-process queue: jobs run as tasks of the API process (one machine, `make run`).

Their state is in the database: a pending record keeps its upload, so start-up recovery resumes
what a stopped process left, and a sweep every half stale period resumes or fails work whose
process died while another one kept running (api.generations.runner).

A webhook delivery's attempt runs at once when its event is committed, and each retry at its
time (a timer of this process). The database holds the schedule: a sweep every
WEBHOOK_SWEEP_S (and one at start) takes up any delivery that is due and not in hand here (one
a stopped process left, or another process's whose timer died with it); the claim in
api.webhooks.delivery lets only one process make each attempt.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from api.config import Settings
from api.db import utcnow
from api.generations.runner import GenerationRunner, Job, Work
from api.observability import tracing
from api.webhooks.delivery import Deliverer
from api.work import QueuedJob

logger = logging.getLogger(__name__)


class InProcessQueue:
    """Runs each job at once (or at its time) in this process."""

    def __init__(self, settings: Settings, runner: GenerationRunner, deliverer: Deliverer) -> None:
        self._runner = runner
        self._deliverer = deliverer
        self._sweep_s = settings.webhook_sweep_s
        self._grace_s = settings.shutdown_grace_s
        self._sweeper: asyncio.Task[None] | None = None
        self._webhook_sweeper: asyncio.Task[None] | None = None
        self._timers: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._deliveries: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._closed = False

    async def enqueue(self, job: QueuedJob, *, work: Work | None = None) -> None:
        if job.kind == "webhook":
            self._deliver_at(job.id, job.not_before)
            return
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
        # Deliveries a stopped process left (due, or lost mid-attempt) are taken up at once;
        # the log is pruned later, by the periodic sweep, not on the start-up path.
        await self._sweep_once(prune=False)
        self._webhook_sweeper = asyncio.create_task(self._sweep_deliveries(), name="webhook-sweep")

    async def aclose(self) -> None:
        """Stop the sweeps and timers; attempts under way get the shutdown grace, then are
        cancelled (each records itself interrupted, due again at the next start)."""
        self._closed = True
        for sweeper in (self._sweeper, self._webhook_sweeper):
            if sweeper is not None:
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        running = list(self._deliveries.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=self._grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- webhook deliveries -----------------------------------------------------------------

    def _deliver_at(self, delivery_id: uuid.UUID, when: datetime | None) -> None:
        """Attempt the delivery at `when` (at once if None or past)."""
        if self._closed:
            return  # it waits in the database for the next start
        delay = 0.0 if when is None else (when - utcnow()).total_seconds()
        if delay <= 0:
            self._deliver_now(delivery_id)
            return
        loop = asyncio.get_running_loop()
        earlier = self._timers.pop(delivery_id, None)
        if earlier is not None:
            earlier.cancel()
        self._timers[delivery_id] = loop.call_later(delay, self._deliver_now, delivery_id)

    def _deliver_now(self, delivery_id: uuid.UUID) -> None:
        timer = self._timers.pop(delivery_id, None)
        if timer is not None:
            timer.cancel()
        if self._closed or delivery_id in self._deliveries:
            return
        task = asyncio.create_task(self._deliver(delivery_id), name=f"webhook-{delivery_id}")
        self._deliveries[delivery_id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(delivery_id, None))

    async def _deliver(self, delivery_id: uuid.UUID) -> None:
        # Under the trace of the request whose work announced it; a sweep's starts its own.
        tracing.ensure()
        try:
            attempted = await self._deliverer.attempt(delivery_id)
        except Exception:
            # Left pending (its lease runs out): the sweep takes it up again.
            logger.exception("webhook delivery %s: the attempt could not be recorded", delivery_id)
            return
        if attempted.pending and attempted.ran:
            self._deliver_at(delivery_id, attempted.next_attempt_at)

    async def _sweep_deliveries(self) -> None:
        """Every WEBHOOK_SWEEP_S (after the one at start): attempt what is due and not in hand,
        and prune the log at the first of them, then once an hour."""
        loop = asyncio.get_running_loop()
        pruned_at = float("-inf")
        while True:
            await asyncio.sleep(self._sweep_s)
            prune = loop.time() - pruned_at >= PRUNE_EVERY_S
            if prune:
                pruned_at = loop.time()
            await self._sweep_once(prune=prune)

    async def _sweep_once(self, *, prune: bool) -> None:
        try:
            due = [d for d, _ in await self._deliverer.due() if d not in self._deliveries]
            if due:
                logger.info("%d webhook deliveries are due; attempting them", len(due))
            for delivery_id in due:
                self._deliver_now(delivery_id)
            if prune:
                await self._deliverer.prune()
        except Exception:
            logger.exception("the sweep for due webhook deliveries failed")


PRUNE_EVERY_S = 3600.0
