"""A generation's style: how its animal is drawn (`character` or `paint`).

The records already made were drawn as face paint, so they get `paint`; a record made from now on
gets `character` when its request names no style, which is the column's default.

PostgreSQL: the column is added with the default `paint` (existing rows take it without a
rewrite), then the default becomes `character`. SQLite cannot change a default in place, and
rebuilding the table (batch mode) drops it first, which with foreign keys on deletes what
cascades from it (the kept uploads of pending work): there the column is added with its final
default, in place, and the rows that were there are set to `paint`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Style = sa.String(length=16)
DEFAULT_STYLE = "character"
EARLIER_STYLE = "paint"  # how every record made before this revision was drawn


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.add_column("generations", style_column(DEFAULT_STYLE))
        generations = sa.table("generations", sa.column("style", Style))
        op.execute(generations.update().values(style=EARLIER_STYLE))
        return
    op.add_column("generations", style_column(EARLIER_STYLE))
    op.alter_column(
        "generations",
        "style",
        existing_type=Style,
        existing_nullable=False,
        server_default=DEFAULT_STYLE,
    )


def style_column(server_default: str) -> sa.Column[str]:
    return sa.Column("style", Style, nullable=False, server_default=server_default)


def downgrade() -> None:
    # SQLite (3.35+) drops a plain column in place: no rebuild, nothing cascades.
    op.drop_column("generations", "style")
