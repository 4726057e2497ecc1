"""Generation history, packs (one upload, several animals), and the pending uploads that async
work needs to survive a restart."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column

from api.animals import DEFAULT_STYLE
from api.db import Base, utcnow


class GenerationStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    succeeded = "succeeded"
    failed = "failed"


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        # Keyset pagination of one user's history, newest first, ties broken by id.
        Index("ix_generations_user_id_created_at_id", "user_id", "created_at", "id"),
        # One record per (user, Idempotency-Key).
        Index(
            "uq_generations_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        # Start-up recovery finds unfinished work by status and age.
        Index("ix_generations_status_updated_at", "status", "updated_at"),
        # A pack's generations.
        Index("ix_generations_pack_id", "pack_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The pack this generation is one animal of (None for a single upload).
    pack_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("packs.id", ondelete="CASCADE"))
    status: Mapped[GenerationStatus] = mapped_column(
        SAEnum(
            GenerationStatus,
            name="generation_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
            create_constraint=True,
        ),
        default=GenerationStatus.pending,
    )
    animal: Mapped[str] = mapped_column(String(32))
    # How the animal is drawn (api.animals.STYLES). Records made before styles existed were
    # drawn as face paint, and say so (migration 0006).
    style: Mapped[str] = mapped_column(
        String(16), default=DEFAULT_STYLE, server_default=DEFAULT_STYLE
    )
    object_name: Mapped[str | None] = mapped_column(String(512))
    faces: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    timings_ms: Mapped[dict[str, float] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of (animal, style, image bytes): tells a retried request from a reused key.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    # 0, then one more each time a retry (same Idempotency-Key) puts the record back to work:
    # the work queue names a job's task after (id, run).
    run: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class Pack(Base):
    """One upload, several animals: a generation per animal (each with `pack_id`), the face
    found once. Its status is derived from its generations (api.generations.packs), not kept."""

    __tablename__ = "packs"
    __table_args__ = (
        Index(
            "uq_packs_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The animals in the order they were asked for (the order its generations are shown in).
    animals: Mapped[list[str]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of (animals, style, image bytes), as for a generation.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # As a generation's: one more each time a retry puts the pack back to work.
    run: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GenerationInput(Base):
    """The prepared upload of an async generation not yet finished; deleted as soon as it is."""

    __tablename__ = "generation_inputs"

    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True
    )
    image: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PackInput(Base):
    """The prepared upload of an async pack while any of its generations is unfinished."""

    __tablename__ = "pack_inputs"

    pack_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("packs.id", ondelete="CASCADE"), primary_key=True
    )
    image: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
