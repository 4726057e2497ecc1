"""The API's Prometheus metrics, in a registry of the app's own (nothing global at import).

Every label value comes from a closed set: route templates (not paths), HTTP methods, status
codes, the animal catalogue, the SPEC's error codes, the function's stage names, the work
queue's job kinds and the webhook attempt outcomes. Anything else is counted as `other`, so no
id or user input ever becomes a time series.

With several uvicorn workers, PROMETHEUS_MULTIPROC_DIR makes prometheus_client keep each
worker's values in files there, and /metrics adds them up (`exposition`); it is read by
prometheus_client itself when it is imported, and by the settings (`prometheus_multiproc_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from api.animals import ANIMAL_IDS
from api.errors import PROBLEM_CODES
from api.forwarding.client import FunctionResult, Stored

OTHER = "other"
NONE = "none"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ERROR_CODES = frozenset(PROBLEM_CODES)
# The stages of the function's `timings_ms` (cloud_functions/avatar/pipeline.py STAGES, and its
# `total`; tests/contract checks they agree). A pack's answer has the first three once and
# `compose` and `store` for each animal.
FUNCTION_STAGES = ("decode", "detect", "segment", "compose", "store", "total")
PER_ANIMAL_STAGES = ("compose", "store")
JOB_KINDS = frozenset({"generation", "pack", "webhook"})
GENERATION_STATUSES = frozenset({"succeeded", "failed"})
PACK_STATUSES = frozenset({"succeeded", "partial", "failed"})
# api.webhooks.delivery.Outcome.kind
WEBHOOK_OUTCOMES = frozenset(
    {
        "delivered",
        "gone",
        "http_status",
        "timeout",
        "connection_error",
        "refused",
        "no_webhook",
        "secret_unreadable",
        "interrupted",
        "internal_error",
    }
)

# Seconds. Requests: most are milliseconds, a sync generation seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A function call: the whole pipeline (a Vertex AI image call takes seconds).
FUNCTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# One stage of the function (the local pipeline's take milliseconds).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From a job's record being written to its end (a webhook's retries take hours).
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0)


def closed(value: str | None, allowed: Iterable[str], *, empty: str = NONE) -> str:
    """`value` if it is one of `allowed`, `empty` for None, else `other`."""
    if value is None:
        return empty
    return value if value in allowed else OTHER


@dataclass(frozen=True)
class Metrics:
    """The metrics of one app, and what records them. `enabled` false: nothing is recorded
    (METRICS_ENABLED=false)."""

    registry: CollectorRegistry
    multiprocess_dir: Path | None
    enabled: bool
    http_requests: Counter
    http_duration: Histogram
    generations: Counter
    packs: Counter
    function_calls: Histogram
    function_stages: Histogram
    queue_depth: Gauge
    job_duration: Histogram
    webhook_attempts: Counter

    @classmethod
    def create(cls, *, enabled: bool = True, multiprocess_dir: Path | None = None) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            multiprocess_dir=multiprocess_dir,
            enabled=enabled,
            http_requests=Counter(
                "http_requests",
                "HTTP requests answered, by route template, method and status.",
                ("route", "method", "status"),
                registry=registry,
            ),
            http_duration=Histogram(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
                ("route", "method"),
                buckets=REQUEST_BUCKETS,
                registry=registry,
            ),
            generations=Counter(
                "avatar_generations",
                "Generations finished, by animal, status and error code (`none` on success).",
                ("animal", "status", "code"),
                registry=registry,
            ),
            packs=Counter(
                "avatar_packs",
                "Packs finished, by status (succeeded, partial, failed).",
                ("status",),
                registry=registry,
            ),
            function_calls=Histogram(
                "avatar_function_call_duration_seconds",
                "Calls of the avatar function (retries included), by outcome: ok or the error "
                "code.",
                ("outcome",),
                buckets=FUNCTION_BUCKETS,
                registry=registry,
            ),
            function_stages=Histogram(
                "avatar_function_stage_duration_seconds",
                "The function's own timing of each stage of the calls that succeeded.",
                ("stage",),
                buckets=STAGE_BUCKETS,
                registry=registry,
            ),
            queue_depth=Gauge(
                "avatar_work_queue_depth",
                "Jobs waiting or running, by kind (generation: records pending or processing; "
                "webhook: deliveries pending), read from the database at each scrape.",
                ("kind",),
                multiprocess_mode="mostrecent",
                registry=registry,
            ),
            job_duration=Histogram(
                "avatar_work_job_duration_seconds",
                "From a job's record being written to its end (a generation or a pack member "
                "finished, a webhook delivered or failed for good), by kind and status.",
                ("kind", "status"),
                buckets=JOB_BUCKETS,
                registry=registry,
            ),
            webhook_attempts=Counter(
                "avatar_webhook_deliveries",
                "Webhook delivery attempts, by outcome.",
                ("outcome",),
                registry=registry,
            ),
        )

    # --- recording ---------------------------------------------------------------------------

    def request_answered(self, route: str, method: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        method = closed(method, HTTP_METHODS)
        code = str(status) if 100 <= status <= 599 else OTHER
        self.http_requests.labels(route, method, code).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def generation_finished(
        self,
        *,
        animal: str,
        status: str,
        code: str | None,
        kind: str,
        seconds: float | None,
    ) -> None:
        if not self.enabled:
            return
        status = closed(status, GENERATION_STATUSES)
        self.generations.labels(closed(animal, ANIMAL_IDS), status, closed(code, ERROR_CODES)).inc()
        if seconds is not None:
            self.job_duration.labels(closed(kind, JOB_KINDS), status).observe(max(seconds, 0.0))

    def pack_finished(self, status: str) -> None:
        if self.enabled:
            self.packs.labels(closed(status, PACK_STATUSES)).inc()

    def function_answered(self, outcome: FunctionResult, seconds: float) -> None:
        """A call that got the function's 200 answer: its time and the stages it reported."""
        if not self.enabled:
            return
        self.function_calls.labels("ok").observe(seconds)
        stored = [found for found in outcome.outcomes.values() if isinstance(found, Stored)]
        if not stored:
            return
        for stage in FUNCTION_STAGES:
            if stage not in PER_ANIMAL_STAGES and stage in stored[0].timings_ms:
                self._stage(stage, stored[0].timings_ms[stage])
        for result in stored:
            for stage in PER_ANIMAL_STAGES:
                if stage in result.timings_ms:
                    self._stage(stage, result.timings_ms[stage])

    def _stage(self, stage: str, milliseconds: float) -> None:
        self.function_stages.labels(stage).observe(max(milliseconds, 0.0) / 1000)

    def function_failed(self, code: str, seconds: float) -> None:
        if self.enabled:
            self.function_calls.labels(closed(code, ERROR_CODES)).observe(seconds)

    def webhook_attempted(self, outcome: str, status: str, seconds: float | None) -> None:
        """One attempt (`outcome`: its kind) and, when it ended the delivery, its whole time."""
        if not self.enabled:
            return
        self.webhook_attempts.labels(closed(outcome, WEBHOOK_OUTCOMES)).inc()
        if seconds is not None:
            self.job_duration.labels("webhook", status).observe(max(seconds, 0.0))

    def set_queue_depth(self, kind: str, depth: int) -> None:
        if self.enabled:
            self.queue_depth.labels(closed(kind, JOB_KINDS)).set(depth)

    # --- exposition --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's values, or every worker's when they
        share a multiprocess folder."""
        return generate_latest(self._exposed())

    def _exposed(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return registry

    def serve_on_loopback(self, port: int) -> Callable[[], None] | None:
        """Serve the exposition without a key on 127.0.0.1:`port` (prometheus_client's own
        server, in a thread); a function that stops it, or None when the port is taken (another
        worker of this server serves it, every worker's values included)."""
        try:
            server, thread = start_http_server(port, addr="127.0.0.1", registry=self._exposed())
        except OSError:
            return None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        return stop

    def close(self) -> None:
        """This process is stopping: its live gauges no longer count (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
