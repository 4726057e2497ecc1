"""Webhook deliveries: one attempt at a time, whichever queue runs it.

An attempt claims its delivery (one more attempt, and a lease: the time after which another
process may take it over if this one died), loads the webhook and opens its secrets, checks the
URL and resolves its host (api.webhooks.guard), signs the stored body with the standardwebhooks
package, posts it to an address that passed the check (10 s for all of it, redirects not
followed, at most 64 kB of the answer read), and records how it went: the attempt in the log,
and the delivery delivered (2xx), failed (410, which also removes the webhook; or the last
retry of the schedule spent), or pending until its next attempt (any other answer, a timeout,
a connection error, a refused address).

The queue decides when attempts run (api.work): this module never sleeps or schedules.
Logs name the delivery and the kind of outcome, never the URL, its host or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook as Signer

from api.config import Settings
from api.db import utcnow
from api.generations.runner import with_db_retry
from api.observability.metrics import Metrics
from api.webhooks import guard
from api.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from api.webhooks.secrets import SecretBox, SecretUnreadable

logger = logging.getLogger(__name__)

USER_AGENT = "animal-avatar-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024
# A claimed attempt is taken over by another process this long after its own deadline.
LEASE_MARGIN_S = 30.0
DUE_BATCH = 500
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
KEEPALIVE = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)

DELIVERIES = cast(Table, WebhookDelivery.__table__)
WEBHOOKS = cast(Table, Webhook.__table__)
PENDING, DELIVERED, FAILED = DeliveryStatus.pending, DeliveryStatus.delivered, DeliveryStatus.failed


def _of_webhook(column: Any) -> Any:
    """A column of the delivery's webhook, as a subquery the claim returns (one statement;
    SQLite's RETURNING may not name a joined table)."""
    return (
        select(column)
        .where(WEBHOOKS.c.user_id == DELIVERIES.c.user_id)
        .scalar_subquery()
        .label(column.name)
    )


# Claims the next attempt and reads what it needs, the webhook included (NULLs when it is gone).
CLAIM = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id == bindparam("delivery_id"),
        DELIVERIES.c.status == PENDING,
        DELIVERIES.c.next_attempt_at <= bindparam("due"),
    )
    .values(
        attempts=DELIVERIES.c.attempts + 1,
        next_attempt_at=bindparam("lease"),
        updated_at=bindparam("now"),
    )
    .returning(
        DELIVERIES.c.attempts,
        DELIVERIES.c.attempt_log,
        DELIVERIES.c.user_id,
        DELIVERIES.c.body,
        DELIVERIES.c.created_at,
        *(
            _of_webhook(column)
            for column in (
                WEBHOOKS.c.url,
                WEBHOOKS.c.secret,
                WEBHOOKS.c.previous_secret,
                WEBHOOKS.c.previous_until,
            )
        ),
    )
)
SEEN = select(DELIVERIES.c.status, DELIVERIES.c.attempts, DELIVERIES.c.next_attempt_at).where(
    DELIVERIES.c.id == bindparam("delivery_id")
)
# An attempt's result is written only by the attempt that claimed it (its number).
RECORD = update(DELIVERIES).where(
    DELIVERIES.c.id == bindparam("delivery_id"),
    DELIVERIES.c.status == PENDING,
    DELIVERIES.c.attempts == bindparam("number"),
)
DUE = (
    select(DELIVERIES.c.id, DELIVERIES.c.attempts)
    .where(DELIVERIES.c.status == PENDING, DELIVERIES.c.next_attempt_at <= bindparam("now"))
    .order_by(DELIVERIES.c.next_attempt_at)
    .limit(DUE_BATCH)
)
FAIL_PENDING_OF_USER = (
    update(DELIVERIES)
    .where(DELIVERIES.c.user_id == bindparam("owner"), DELIVERIES.c.status == PENDING)
    .values(status=FAILED, next_attempt_at=None)
)


@dataclass(frozen=True)
class Network:
    """How deliveries reach the network: the resolver and, in tests, an httpx transport."""

    resolver: guard.Resolver = guard.system_resolver
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class Attempted:
    """How a delivery stands after `Deliverer.attempt` (`status` None: it is gone)."""

    status: DeliveryStatus | None
    attempts: int
    next_attempt_at: datetime | None
    ran: bool

    @property
    def pending(self) -> bool:
        return self.status is PENDING


@dataclass(frozen=True)
class Claimed:
    """An attempt this process won: the delivery, and its webhook as it was then (None when
    the webhook is gone)."""

    delivery_id: uuid.UUID
    user_id: uuid.UUID
    number: int
    log: list[dict[str, Any]]  # the attempts before this one
    body: str
    hook: Any  # (url, secret, previous_secret, previous_until), or None
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    """How an attempt went: `kind` is a closed set (logs, metrics); `error` is for the
    webhook's owner (the delivery log), and may name their host."""

    kind: str
    status_code: int | None = None
    error: str | None = None
    # No retry: delivered, or failed for good (410, no webhook).
    final: bool = False
    # 410 Gone: the receiver asks for the webhook to be removed.
    gone: bool = False

    @property
    def delivered(self) -> bool:
        return self.kind == "delivered"


def policy_for(settings: Settings) -> guard.Policy:
    return guard.Policy(
        development=settings.is_development,
        allowed_ports=frozenset(settings.webhook_allowed_ports),
    )


class Deliverer:
    """Makes delivery attempts, at most WEBHOOK_MAX_CONCURRENCY at once."""

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        settings: Settings,
        box: SecretBox,
        network: Network,
        *,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics or Metrics.create(enabled=False)
        self._box = box
        self._network = network
        self._policy = policy_for(settings)
        self._timeout_s = settings.webhook_timeout_s
        self._schedule = settings.webhook_retry_schedule_s
        self._jitter = settings.webhook_retry_jitter
        self._retention = timedelta(days=settings.webhook_log_retention_days)
        self._semaphore = asyncio.Semaphore(settings.webhook_max_concurrency)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        # Connections are kept alive per host (a receiver's next event skips the handshakes),
        # each opened to an address the guard passed as it connected.
        transport = network.transport or guard.guarded_transport(
            self._policy, network.resolver, limits=KEEPALIVE
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self._timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would connect for us
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def attempt(self, delivery_id: uuid.UUID, *, early_s: float = 0.0) -> Attempted:
        """Make the delivery's next attempt if it is due (within `early_s`) and nobody else is
        making one; say how it stands either way."""
        async with self._semaphore:
            claimed = await with_db_retry(partial(self._claim, delivery_id, early_s))
            if isinstance(claimed, Attempted):
                return claimed
            started_at, started = utcnow(), time.perf_counter()
            try:
                outcome = await self._send(claimed)
            except asyncio.CancelledError:
                interrupted = Outcome("interrupted", error="the service stopped during the attempt")
                await asyncio.shield(self._record(claimed, interrupted, started_at, started))
                raise
            except Exception as exc:
                # A bug of ours, not the receiver's doing: recorded like any failed attempt (the
                # schedule retries it), not left to the lease. Named by its type only: its
                # message could carry the URL.
                logger.error(
                    "webhook delivery %s: the attempt failed unexpectedly (%s)",
                    claimed.delivery_id,
                    type(exc).__name__,
                )
                outcome = Outcome("internal_error", error="an unexpected error on our side")
            return await with_db_retry(partial(self._record, claimed, outcome, started_at, started))

    async def due(self) -> list[tuple[uuid.UUID, int]]:
        """Pending deliveries whose next attempt is due (or whose attempt was lost), oldest
        first, up to a batch: each id with the attempts it has had (its next task's name)."""
        async with self._session_factory() as session:
            rows = (await session.execute(DUE, {"now": utcnow()})).all()
        return [(row.id, row.attempts) for row in rows]

    async def prune(self) -> int:
        """Drop finished deliveries older than the log's retention."""
        cutoff = utcnow() - self._retention
        stmt = delete(DELIVERIES).where(
            DELIVERIES.c.status.in_((DELIVERED, FAILED)), DELIVERIES.c.completed_at < cutoff
        )
        async with self._session_factory() as session, session.begin():
            result = await session.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)

    async def _claim(self, delivery_id: uuid.UUID, early_s: float) -> Claimed | Attempted:
        now = utcnow()
        params = {
            "delivery_id": delivery_id,
            "due": now + timedelta(seconds=early_s),
            "lease": now + timedelta(seconds=self._timeout_s + LEASE_MARGIN_S),
            "now": now,
        }
        # One statement, atomic on its own: run outside a transaction (no BEGIN and COMMIT
        # round trips on the way to the receiver).
        async with self._session_factory() as session:
            connection = await session.connection(execution_options=AUTOCOMMIT)
            row = (await connection.execute(CLAIM, params)).first()
            if row is None:
                seen = (await connection.execute(SEEN, {"delivery_id": delivery_id})).first()
                if seen is None:
                    return Attempted(None, 0, None, ran=False)
                return Attempted(seen.status, seen.attempts, seen.next_attempt_at, ran=False)
        hook = row if row.url is not None else None
        return Claimed(
            delivery_id, row.user_id, row.attempts, row.attempt_log, row.body, hook, row.created_at
        )

    async def _send(self, claimed: Claimed) -> Outcome:
        hook = claimed.hook
        if hook is None:
            return Outcome("no_webhook", error="the webhook was removed", final=True)
        try:
            secrets = self._secrets(claimed.user_id, hook)
        except SecretUnreadable:
            logger.error(
                "webhook delivery %s: the secret cannot be opened; was WEBHOOK_ENCRYPTION_KEY "
                "replaced instead of rotated?",
                claimed.delivery_id,
            )
            return Outcome("secret_unreadable", error="the webhook's secret cannot be read")
        try:
            async with asyncio.timeout(self._timeout_s):
                target = guard.parse(hook.url, self._policy)
                # Checked at every attempt (a kept-alive connection opens no new one).
                await guard.addresses(target, self._policy, self._network.resolver)
                status = await self._post(claimed, target, secrets)
        except guard.Refused as exc:
            return Outcome("refused", error=f"refused: {exc}")
        except TimeoutError:
            return Outcome("timeout", error=f"no answer within {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome("connection_error", error=_describe(exc))
        if 200 <= status < 300:
            return Outcome("delivered", status_code=status, final=True)
        if status == 410:
            error = "the receiver answered 410 Gone: the webhook was removed"
            return Outcome("gone", status_code=status, error=error, final=True, gone=True)
        if 300 <= status < 400:
            error = f"the receiver answered {status}; redirects are not followed"
            return Outcome("http_status", status_code=status, error=error)
        return Outcome("http_status", status_code=status, error=f"the receiver answered {status}")

    def _secrets(self, owner: uuid.UUID, hook: Any) -> list[str]:
        """The secrets that sign now: the webhook's, and during a rotation the previous one
        (skipped if no configured key opens it any more: the new one still signs)."""
        found = [self._box.open(hook.secret, owner)]
        if hook.previous_secret is not None and hook.previous_until > utcnow():
            try:
                found.append(self._box.open(hook.previous_secret, owner))
            except SecretUnreadable:
                logger.warning("a webhook's previous secret cannot be opened; signing without it")
        return found

    async def _post(self, claimed: Claimed, target: guard.Target, secrets: list[str]) -> int:
        """Post the signed body; the answer's status. The URL keeps its host: TLS verifies
        it, and the transport connects only to an address the guard passes."""
        message_id = str(claimed.delivery_id)
        now = utcnow()
        signature = " ".join(
            Signer(secret).sign(message_id, now, claimed.body) for secret in secrets
        )
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        request = self._client.build_request(
            "POST", target.url, content=claimed.body.encode(), headers=headers
        )
        response = await self._client.send(request, stream=True)
        try:
            # Raw bytes, not decoded: a compressed answer is not inflated.
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= MAX_ANSWER_BYTES:
                    break
        except httpx.StreamConsumed:
            pass  # an answer already read whole (an in-process transport's)
        finally:
            await response.aclose()
        return response.status_code

    async def _record(
        self, claimed: Claimed, outcome: Outcome, started_at: datetime, started: float
    ) -> Attempted:
        """Write the attempt (in the delivery's log) and the delivery's new state, in one
        statement; a 410 also removes the webhook, in the same transaction."""
        now = utcnow()
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        status, next_at = self._next(claimed.number, outcome, now)
        values: dict[str, Any] = {
            "status": status,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "next_attempt_at": next_at,
            "updated_at": now,
            "completed_at": None if status is PENDING else now,
        }
        attempt = {
            "number": claimed.number,
            "started_at": started_at.isoformat(),
            "duration_ms": duration_ms,
            "status_code": outcome.status_code,
            "error": outcome.error,
        }
        values["attempt_log"] = [*claimed.log, attempt]
        params = {"delivery_id": claimed.delivery_id, "number": claimed.number}
        hook = claimed.hook if outcome.gone else None
        async with self._session_factory() as session:
            if hook is not None:
                async with session.begin():  # the webhook goes with this answer, or neither
                    connection = await session.connection()
                    written = await connection.execute(RECORD.values(**values), params)
                    if written.rowcount:
                        reason = outcome.error or ""
                        await remove_webhook(session, claimed.user_id, reason=reason, url=hook.url)
            else:
                # One statement, atomic on its own (the attempt is in the row's log).
                connection = await session.connection(execution_options=AUTOCOMMIT)
                written = await connection.execute(RECORD.values(**values), params)
        if not written.rowcount:  # erased (or deleted) while the attempt ran
            return Attempted(None, claimed.number, None, ran=True)
        ended = None if status is PENDING else (now - claimed.created_at).total_seconds()
        self._metrics.webhook_attempted(outcome.kind, status.value, ended)
        logger.info(
            "webhook delivery %s attempt %d: %s%s -> %s",
            claimed.delivery_id,
            claimed.number,
            outcome.kind,
            f" {outcome.status_code}" if outcome.status_code else "",
            status,
        )
        return Attempted(status, claimed.number, next_at, ran=True)

    def _next(
        self, number: int, outcome: Outcome, now: datetime
    ) -> tuple[DeliveryStatus, datetime | None]:
        """The delivery's state after attempt `number`, and when the next one is due."""
        if outcome.delivered:
            return DELIVERED, None
        if outcome.final:
            return FAILED, None
        if outcome.kind == "interrupted":  # not the receiver's doing: again at the next start
            return PENDING, now
        if number > len(self._schedule):
            return FAILED, None
        wait = self._schedule[number - 1] * self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        return PENDING, now + timedelta(seconds=wait)


async def remove_webhook(
    session: AsyncSession, user_id: uuid.UUID, *, reason: str, url: str | None = None
) -> bool:
    """Remove a user's webhook (only if it still points at `url`, when given) and fail its
    pending deliveries with `reason`; whether there was one to remove."""
    stmt = delete(WEBHOOKS).where(WEBHOOKS.c.user_id == user_id)
    if url is not None:
        stmt = stmt.where(WEBHOOKS.c.url == url)
    removed = await session.execute(stmt)
    if not getattr(removed, "rowcount", 0):
        return False
    now = utcnow()
    await session.execute(
        FAIL_PENDING_OF_USER.values(last_error=reason, updated_at=now, completed_at=now),
        {"owner": user_id},
    )
    return True


def _describe(exc: httpx.HTTPError) -> str:
    """What went wrong, in words for the webhook's owner."""
    if isinstance(exc, httpx.TimeoutException):
        return "the connection timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver's answer was not valid HTTP"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
