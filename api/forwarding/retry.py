"""When and how long to wait before trying the function again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from api.db import utcnow

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 4.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retry at most `max_attempts` times in all, never past `budget_s` from the first try."""

    max_attempts: int
    budget_s: float
    base_s: float = BACKOFF_BASE_S
    cap_s: float = BACKOFF_CAP_S

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Full-jitter backoff after the `attempt`-th try (1-based), or the server's Retry-After."""
        if retry_after_s is not None:
            return retry_after_s
        return random.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))  # noqa: S311

    def may_retry(self, attempt: int, elapsed_s: float, delay_s: float) -> bool:
        """Whether another try fits in the attempts and the time budget."""
        return attempt < self.max_attempts and elapsed_s + delay_s <= self.budget_s


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())
