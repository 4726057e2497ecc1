"""A deadline-bounded retry loop with jittered exponential backoff for the Google calls.

The client libraries' default retries wait up to 600 s; every call here passes `retry=None`
and a per-attempt timeout taken from what is left of the deadline instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# Below this much time left, another attempt cannot finish: give up instead.
MIN_ATTEMPT_S = 0.05

# GCP_DEADLINE_S is the whole request's budget for Google calls (the infra sets it a little
# under the function's timeout). The stages run one after another, so each gets a share and
# together they never outlast it; image generation is by far the slowest call.
DEADLINE_SHARES = {"detect": 0.25, "compose": 0.6, "store": 0.15}


def stage_deadline_s(total_s: float, stage: str) -> float:
    """The part of the request's Google-call budget that one stage may spend."""
    return total_s * DEADLINE_SHARES[stage]


@dataclass
class Backoff:
    """Jittered exponential delays between attempts, at most `max_attempts` in all."""

    initial_s: float = 0.5
    max_s: float = 4.0
    max_attempts: int = 4
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay_s(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (0-based): full jitter, capped."""
        ceiling = min(self.max_s, self.initial_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


def call_with_retry(
    call: Callable[[float], T],
    *,
    deadline_s: float,
    is_retryable: Callable[[BaseException], bool],
    backoff: Backoff | None = None,
) -> T:
    """Run `call(timeout_s)` until it succeeds, fails for good, or the deadline is spent.

    The last error is re-raised as is; translating it is the adapter's job.
    """
    backoff = backoff or Backoff()
    expires_at = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            return call(max(MIN_ATTEMPT_S, expires_at - time.monotonic()))
        except Exception as exc:
            delay_s = backoff.delay_s(attempt)
            attempt += 1
            if not is_retryable(exc) or attempt >= backoff.max_attempts:
                raise
            if time.monotonic() + delay_s + MIN_ATTEMPT_S >= expires_at:
                raise
            backoff.sleep(delay_s)
