"""The hourly roll-up per pool (see licusage.rollup and licusage.analytics.rollup).

* ``rollup_hours``: per pool and complete UTC hour, the peak in use, the seat-seconds used and
  the denials (hours with none of them have no row).
* ``rollup_pools``: per pool, the hour before which it is rolled up, and a version.
* ``rollup_dirty``: the pools and hours writes changed since the last refresh.

All three start empty: the first read (or ``licusage rollup rebuild``) fills them from the holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_hours",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
        sa.Column("seat_seconds", sa.Float(), nullable=False),
        sa.Column("denials", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.PrimaryKeyConstraint("pool_id", "hour"),
    )
    op.create_table(
        "rollup_pools",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.PrimaryKeyConstraint("pool_id"),
    )
    op.create_table(
        "rollup_dirty",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("rollup_dirty")
    op.drop_table("rollup_pools")
    op.drop_table("rollup_hours")
