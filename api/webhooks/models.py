"""A user's completion webhook, and the log of what was sent to it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, utcnow


class Webhook(Base):
    """One per user. The signing secrets are stored encrypted (api.webhooks.secrets): a dump of
    the database alone cannot sign."""

    __tablename__ = "webhooks"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    # After a rotation, the previous secret signs too, until `previous_until`.
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(Base):
    """One event for one user's webhook: its body as signed (the same bytes at every attempt,
    under the same `webhook-id`, which is this row's id), and how its attempts went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The delivery log pages through one user's deliveries, newest first.
        Index("ix_webhook_deliveries_user_id_created_at_id", "user_id", "created_at", "id"),
        # The queue finds pending deliveries that are due.
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    # What the event is about (not foreign keys: the log outlives a deleted generation).
    generation_id: Mapped[uuid.UUID | None] = mapped_column()
    pack_id: Mapped[uuid.UUID | None] = mapped_column()
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        SAEnum(
            DeliveryStatus,
            name="webhook_delivery_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
            create_constraint=True,
        ),
        default=DeliveryStatus.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    # Every attempt, first to last: {number, started_at, duration_ms, status_code, error}. In
    # the row (at most one per step of the schedule), so an attempt is recorded in one statement.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    # Pending: when the next attempt is due (during an attempt, when it is given up as lost).
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
