"""Completion events: the delivery rows a finished generation or pack writes for its owner's
webhook, in the transaction that finishes it (api.generations.lifecycle calls these).

A row holds the exact body that will be signed and sent, so every attempt sends the same bytes
under the same `webhook-id` (the row's id). The id is derived from what ended and its run: the
same end is one event, and a retried run (a new Idempotency-Key retry) is a new one.

Bodies are thin (SPEC "Completion webhooks"): what ended, how, and when; no image URL (the
receiver reads the record with its key). A pack's generations send no events of their own: the
pack sends one, `pack.completed`, when the last of them ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery

# Delivery ids are uuid5 names in this namespace (random, fixed forever).
NAMESPACE = uuid.UUID("0b6c2f7e-4b1d-4d55-9a3f-5c1f0e9d2a61")

WEBHOOKS = cast(Table, Webhook.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
HAS_WEBHOOK = select(WEBHOOKS.c.user_id).where(WEBHOOKS.c.user_id == bindparam("user_id"))
DELIVERY_EXISTS = select(DELIVERIES.c.id).where(DELIVERIES.c.id == bindparam("id"))
INSERT_DELIVERY = insert(DELIVERIES)
# The same row, written only if the user has a webhook: one statement whether or not they do.
# Each value is bound with its column's own type.
_COLUMNS = (
    "id",
    "event",
    "generation_id",
    "pack_id",
    "body",
    "status",
    "attempts",
    "attempt_log",
    "next_attempt_at",
    "created_at",
    "updated_at",
)
# RETURNING says whether a row was written (rowcount is not reliable for INSERT ... SELECT).
INSERT_DELIVERY_IF_WEBHOOK = (
    insert(DELIVERIES)
    .from_select(
        ["user_id", *_COLUMNS],
        select(
            WEBHOOKS.c.user_id,
            *(bindparam(name, type_=DELIVERIES.c[name].type) for name in _COLUMNS),
        ).where(WEBHOOKS.c.user_id == bindparam("owner", type_=WEBHOOKS.c.user_id.type)),
    )
    .returning(DELIVERIES.c.id)
)


async def has_webhook(connection: AsyncConnection, user_id: uuid.UUID) -> bool:
    """Whether the user has a webhook (else nothing ending of theirs writes an event)."""
    return (await connection.execute(HAS_WEBHOOK, {"user_id": user_id})).first() is not None


async def generation_ended(
    connection: AsyncConnection,
    *,
    generation_id: uuid.UUID,
    user_id: uuid.UUID,
    animal: str,
    run: int,
    values: dict[str, Any],
) -> uuid.UUID | None:
    """Write the event of a single generation that ended with these columns, if its owner has
    a webhook; its id (None: no webhook)."""
    status = str(values["status"])
    data = {
        "id": str(generation_id),
        "status": status,
        "animal": animal,
        "pack_id": None,
        "error": _error(values.get("error_code"), values.get("error_detail")),
    }
    delivery_id = uuid.uuid5(NAMESPACE, f"generation/{generation_id}/{run}")
    row = _row(
        delivery_id,
        event=f"generation.{status}",
        at=values["completed_at"],
        data=data,
        generation_id=generation_id,
    )
    written = await connection.execute(INSERT_DELIVERY_IF_WEBHOOK, {"owner": user_id, **row})
    return delivery_id if written.first() is not None else None


async def pack_ended(
    connection: AsyncConnection,
    *,
    pack_id: uuid.UUID,
    user_id: uuid.UUID,
    animals: Sequence[str],
    run: int,
    status: str,
    error: tuple[str | None, str | None],
    at: datetime,
) -> uuid.UUID | None:
    """Write the event of a pack whose last generation ended; its id, or None when this run's
    event was written already."""
    delivery_id = uuid.uuid5(NAMESPACE, f"pack/{pack_id}/{run}")
    if (await connection.execute(DELIVERY_EXISTS, {"id": delivery_id})).first() is not None:
        return None
    data = {
        "id": str(pack_id),
        "status": status,
        "animals": list(animals),
        "pack_id": str(pack_id),
        "error": _error(*error),
    }
    row = _row(delivery_id, event="pack.completed", at=at, data=data, pack_id=pack_id)
    await connection.execute(INSERT_DELIVERY, {"user_id": user_id, **row})
    return delivery_id


def timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the Standard Webhooks examples write it."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(
    delivery_id: uuid.UUID,
    *,
    event: str,
    at: datetime,
    data: dict[str, Any],
    generation_id: uuid.UUID | None = None,
    pack_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A pending delivery's columns (its owner's aside), due at once."""
    body = {"type": event, "timestamp": timestamp(at), "data": data}
    return {
        "id": delivery_id,
        "event": event,
        "generation_id": generation_id,
        "pack_id": pack_id,
        "body": json.dumps(body, separators=(",", ":")),
        "status": DeliveryStatus.pending,
        "attempts": 0,
        "attempt_log": [],
        "next_attempt_at": at,
        "created_at": at,
        "updated_at": at,
    }


def _error(code: str | None, detail: str | None) -> dict[str, str | None] | None:
    return None if code is None else {"code": code, "detail": detail}
