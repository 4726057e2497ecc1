"""Usernames unique whatever their case (a unique index on lower(username)).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fails if case-variants already exist: they must be resolved by hand, not silently merged.
    op.create_index(
        "uq_users_username_lower", "users", [sa.func.lower(sa.column("username"))], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", table_name="users")
