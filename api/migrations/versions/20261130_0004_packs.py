"""Packs: one upload, several animals; each generation may name its pack.

A pack's status is derived from its generations, so the table holds only what the request
said (animals, Idempotency-Key, fingerprint) and its run; an async pack keeps its upload in
`pack_inputs` while any of its generations is unfinished.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# api.db.UTCDateTime stores exactly this; the migration keeps to plain SQLAlchemy types.
Timestamp = sa.DateTime(timezone=True)
IDEMPOTENCY_KEY_SET = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "packs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("animals", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("run", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_packs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packs")),
    )
    op.create_index(
        "uq_packs_user_id_idempotency_key",
        "packs",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=IDEMPOTENCY_KEY_SET,
        sqlite_where=IDEMPOTENCY_KEY_SET,
    )
    op.create_table(
        "pack_inputs",
        sa.Column("pack_id", sa.Uuid(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["pack_id"], ["packs.id"], name=op.f("fk_pack_inputs_pack_id_packs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pack_id", name=op.f("pk_pack_inputs")),
    )
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("pack_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_generations_pack_id_packs"), "packs", ["pack_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_generations_pack_id", ["pack_id"])


def downgrade() -> None:
    # A pack's generations stay, as single generations: the history is the user's.
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_pack_id")
        batch.drop_constraint(op.f("fk_generations_pack_id_packs"), type_="foreignkey")
        batch.drop_column("pack_id")
    op.drop_table("pack_inputs")
    op.drop_index("uq_packs_user_id_idempotency_key", table_name="packs")
    op.drop_table("packs")
