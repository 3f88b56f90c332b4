"""The hourly roll-up keeps what exact percentiles and time near full need.

* ``rollup_hours`` gains ``low`` (the lowest in use of the hour), ``peak_at`` (the first instant
  of the hour's peak) and ``used_us`` (the seat-seconds in seat-microseconds, exact).
* ``rollup_levels``: per pool and hour whose in use changed, how long each in-use count lasted.

The roll-up is a cache of the holds: the migration empties it (all three roll-up tables) and the
first read, or ``licusage rollup rebuild``, fills it again from the holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _extra_columns(extra: bool) -> list[sa.Column[Any]]:
    """Migration 0007's columns of rollup_hours (none: the table of 0006)."""
    if not extra:
        return []
    return [
        sa.Column("low", sa.Integer(), nullable=False),
        sa.Column("peak_at", sa.DateTime(), nullable=True),
        sa.Column("used_us", sa.BigInteger(), nullable=False),
    ]


def _rollup_hours(extra: bool) -> None:
    op.create_table(
        "rollup_hours",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
        sa.Column("seat_seconds", sa.Float(), nullable=False),
        sa.Column("denials", sa.Integer(), nullable=False),
        *_extra_columns(extra),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.PrimaryKeyConstraint("pool_id", "hour"),
    )


def upgrade() -> None:
    op.drop_table("rollup_hours")  # a cache: recomputed from the holds by the next read
    _rollup_hours(extra=True)
    op.create_table(
        "rollup_levels",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("levels", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.PrimaryKeyConstraint("pool_id", "hour"),
    )
    op.execute("DELETE FROM rollup_dirty")
    op.execute("DELETE FROM rollup_pools")


def downgrade() -> None:
    op.drop_table("rollup_levels")
    op.drop_table("rollup_hours")
    _rollup_hours(extra=False)
    op.execute("DELETE FROM rollup_dirty")
    op.execute("DELETE FROM rollup_pools")
