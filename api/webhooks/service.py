"""A user's webhook: set, rotate, read, remove; and the delivery log."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.config import Settings
from api.db import utcnow
from api.errors import InvalidRequest, NotFound
from api.pagination import keyset_page, split_page
from api.webhooks import guard
from api.webhooks.delivery import Network, policy_for, remove_webhook
from api.webhooks.models import Webhook, WebhookDelivery
from api.webhooks.schemas import AttemptView, DeliveryView, WebhookUpdate, WebhookView
from api.webhooks.secrets import SecretBox, SecretUnreadable, new_secret

logger = logging.getLogger(__name__)

# Resolving a webhook's host when it is set gives up after this long.
RESOLVE_TIMEOUT_S = 5.0
REMOVED = "the webhook was removed"
RESEAL_BATCH = 500


async def put_webhook(
    session: AsyncSession,
    user_id: uuid.UUID,
    update: WebhookUpdate,
    *,
    settings: Settings,
    box: SecretBox,
    network: Network,
) -> WebhookView:
    """Create the webhook, change its URL, or rotate its secret; the secret is in the answer
    only when it is new."""
    if update.url is not None:
        await check_url(update.url, settings, network)
    for _ in range(2):  # a create that lost a race with another one is an update
        webhook = await session.get(Webhook, user_id, with_for_update=True)
        secret: str | None = None
        if webhook is None:
            if update.url is None:
                raise NotFound('no webhook to rotate: set one first with {"url": ...}')
            secret = new_secret()
            webhook = Webhook(user_id=user_id, url=update.url, secret=box.seal(secret, user_id))
            session.add(webhook)
        else:
            if update.url is not None:
                webhook.url = update.url
            if update.rotate:
                secret = new_secret()
                window = timedelta(seconds=settings.webhook_rotation_window_s)
                webhook.previous_secret, webhook.previous_until = webhook.secret, utcnow() + window
                webhook.secret = box.seal(secret, user_id)
            webhook.updated_at = utcnow()
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            continue
        return view(webhook, secret)
    raise InvalidRequest("the webhook changed while it was being set; please try again")


async def check_url(url: str, settings: Settings, network: Network) -> None:
    """422 for a URL a webhook may not use (api.webhooks.guard), its host resolved when the
    policy asks for public addresses."""
    policy = policy_for(settings)
    try:
        target = guard.parse(url, policy)
        if not policy.development:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                await guard.addresses(target, policy, network.resolver)
    except guard.Refused as exc:
        raise InvalidRequest(f"url: {exc}") from None
    except TimeoutError:
        raise InvalidRequest("url: its host did not resolve in time") from None


async def get_webhook(session: AsyncSession, user_id: uuid.UUID) -> WebhookView:
    webhook = await session.get(Webhook, user_id)
    if webhook is None:
        raise NotFound("no webhook is set")
    return view(webhook, None)


async def delete_webhook(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Remove the webhook; its pending deliveries fail (the log keeps them)."""
    if not await remove_webhook(session, user_id, reason=REMOVED):
        raise NotFound("no webhook is set")
    await session.commit()


def view(webhook: Webhook, secret: str | None) -> WebhookView:
    rotating = webhook.previous_until if webhook.previous_secret is not None else None
    return WebhookView(
        url=webhook.url,
        secret=secret,
        previous_secret_expires_at=rotating if rotating and rotating > utcnow() else None,
        created_at=webhook.created_at,
        updated_at=webhook.updated_at,
    )


async def list_deliveries(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[Sequence[DeliveryView], str | None]:
    """One page of the user's delivery log, newest first, each with its attempts."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.user_id == user_id)
    stmt = keyset_page(
        stmt, WebhookDelivery.created_at, WebhookDelivery.id, cursor=cursor, limit=limit
    )
    rows, next_cursor = split_page((await session.execute(stmt)).scalars().all(), limit)
    views = [
        DeliveryView(
            id=row.id,
            event=row.event,
            generation_id=row.generation_id,
            pack_id=row.pack_id,
            status=row.status.value,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            completed_at=row.completed_at,
            attempt_log=[AttemptView.model_validate(entry) for entry in row.attempt_log],
        )
        for row in rows
    ]
    return views, next_cursor


async def reseal_secrets(session_factory: Callable[[], AsyncSession], box: SecretBox) -> int:
    """Re-encrypt under WEBHOOK_ENCRYPTION_KEY's first key every stored secret still under
    another one (a key being rotated out); how many webhooks were. Run as the API starts.

    Each row is rewritten only if it still holds what was read: a webhook rotated meanwhile
    keeps its new secret. A secret no configured key opens is left, and logged. With one key
    configured there is nothing to do (a secret under an unlisted key cannot be opened): the
    table is not scanned at every start.
    """
    if not box.rotating:
        return 0
    fingerprint = box.fingerprint
    stale = or_(
        func.substr(Webhook.secret, 2, len(fingerprint)) != fingerprint,
        func.substr(Webhook.previous_secret, 2, len(fingerprint)) != fingerprint,
    )
    resealed = unreadable = 0
    seen: set[uuid.UUID] = set()
    while True:
        stmt = select(Webhook.user_id, Webhook.secret, Webhook.previous_secret).where(stale)
        if seen:
            stmt = stmt.where(Webhook.user_id.not_in(seen))
        async with session_factory() as session, session.begin():
            rows = (await session.execute(stmt.limit(RESEAL_BATCH))).all()
            for owner, secret, previous in rows:
                seen.add(owner)
                try:
                    values = {"secret": box.seal(box.open(secret, owner), owner)}
                    if previous is not None:
                        values["previous_secret"] = box.seal(box.open(previous, owner), owner)
                except SecretUnreadable:
                    unreadable += 1
                    continue
                written = await session.execute(
                    update(Webhook)
                    .where(Webhook.user_id == owner, Webhook.secret == secret)
                    .values(**values)
                )
                resealed += int(getattr(written, "rowcount", 0) or 0)
        if len(rows) < RESEAL_BATCH:
            break
    if resealed or unreadable:
        logger.info(
            "webhook secrets re-encrypted under the first WEBHOOK_ENCRYPTION_KEY: %d; "
            "opened by no configured key: %d",
            resealed,
            unreadable,
        )
    return resealed
