"""Indexes for the user filter and bulk logout.

* ``ix_sessions_active_last_activity`` also covers ``user_key``: SQLite checks the user filter's
  ``LIKE`` on the (partial, active-only) index alone instead of visiting every active row.
* PostgreSQL: a partial GIN trigram index on ``sessions.user_key`` for active sessions (needs
  the ``pg_trgm`` extension; skipped with a warning when the role may not create it, see
  :mod:`licusage.migrations.trigram`).
* ``ix_holds_released_at`` only holds released licenses (``WHERE released_at IS NOT NULL``):
  history queries compare non-NULL values only, and releasing licenses no longer walks every
  NULL entry (nor adds one per new hold).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from licusage.migrations import trigram

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _active_last_activity(columns: list[str]) -> None:
    op.drop_index("ix_sessions_active_last_activity", table_name="sessions")
    op.create_index(
        "ix_sessions_active_last_activity",
        "sessions",
        columns,
        unique=False,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def upgrade() -> None:
    _active_last_activity(["last_activity", "id", "user_key"])
    op.drop_index("ix_holds_released_at", table_name="session_licenses")
    op.create_index(
        "ix_holds_released_at",
        "session_licenses",
        ["released_at"],
        unique=False,
        sqlite_where=sa.text("released_at IS NOT NULL"),
        postgresql_where=sa.text("released_at IS NOT NULL"),
    )
    trigram.create_index(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(trigram.DROP_INDEX)  # the extension stays: other objects may use it
    op.drop_index("ix_holds_released_at", table_name="session_licenses")
    op.create_index("ix_holds_released_at", "session_licenses", ["released_at"], unique=False)
    _active_last_activity(["last_activity", "id"])
