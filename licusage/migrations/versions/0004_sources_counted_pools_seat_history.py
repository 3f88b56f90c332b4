"""License servers as sources: counted pools, seat history, checkouts, reservations, queues.

* ``license_pools.counting``: ``per_user`` (a user's sessions share a seat; every pool so far)
  or ``per_checkout`` (floating licenses: the sum of licenses out). ``seats`` may be NULL
  (unknown).
* ``pool_seats``: the seats in force from a moment on; each existing pool gets one entry at its
  creation with its current seats.
* ``session_licenses`` gets its own ``id`` key and a ``licenses`` count (1 for every existing
  hold); at most one active hold per session and product (a unique partial index), so a count
  that changes is a released hold followed by a new one.
* ``sessions.source`` (``app`` for every existing session), ``server_id``, ``display``;
  ``denials.detail`` (the server's reason) and ``server_id``.
* New tables ``license_servers``, ``server_checkouts``, ``reservations``, ``queued_requests``,
  ``imported_files``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_HOLD_COLUMNS = (
    "session_id, product_id, license_type_id, pool_id, user_name, granted_at, released_at"
)


def _hold_indexes() -> None:
    op.create_index(
        "ux_holds_active_session_product",
        "session_licenses",
        ["session_id", "product_id"],
        unique=True,
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index(
        "ix_holds_active_pool_user",
        "session_licenses",
        ["pool_id", "user_name"],
        unique=False,
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index(
        "ix_holds_pool_granted", "session_licenses", ["pool_id", "granted_at"], unique=False
    )
    op.create_index(
        "ix_holds_released_at",
        "session_licenses",
        ["released_at"],
        unique=False,
        sqlite_where=sa.text("released_at IS NOT NULL"),
        postgresql_where=sa.text("released_at IS NOT NULL"),
    )


def _rekey_holds_sqlite() -> None:
    """SQLite cannot change a primary key in place: copy the table into its new shape."""
    op.create_table(
        "session_licenses_new",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("license_type_id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("licenses", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["license_type_id"], ["license_types.id"]),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"]),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        f"INSERT INTO session_licenses_new ({_HOLD_COLUMNS}, licenses) "
        f"SELECT {_HOLD_COLUMNS}, 1 FROM session_licenses ORDER BY granted_at, session_id"
    )
    op.drop_table("session_licenses")
    op.rename_table("session_licenses_new", "session_licenses")
    _hold_indexes()


def _rekey_holds_postgresql() -> None:
    op.drop_constraint("session_licenses_pkey", "session_licenses", type_="primary")
    op.execute("ALTER TABLE session_licenses ADD COLUMN id SERIAL PRIMARY KEY")
    op.add_column(
        "session_licenses",
        sa.Column("licenses", sa.Integer(), server_default="1", nullable=False),
    )
    op.create_index(
        "ux_holds_active_session_product",
        "session_licenses",
        ["session_id", "product_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def upgrade() -> None:
    op.create_table(
        "license_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("remove_command", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("license_pools") as batch:
        batch.alter_column("seats", existing_type=sa.Integer(), nullable=True)
        batch.add_column(
            sa.Column("counting", sa.String(length=20), server_default="per_user", nullable=False)
        )
    op.create_table(
        "pool_seats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pool_id", "valid_from"),
    )
    op.execute(
        "INSERT INTO pool_seats (pool_id, valid_from, seats, origin) "
        "SELECT id, created_at, seats, 'catalogue' FROM license_pools"
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=200), server_default="app", nullable=False)
        )
        batch.add_column(sa.Column("server_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("display", sa.String(length=255), nullable=True))
        batch.create_foreign_key("fk_sessions_server_id", "license_servers", ["server_id"], ["id"])
    with op.batch_alter_table("denials") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("server_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_denials_server_id", "license_servers", ["server_id"], ["id"])
    if op.get_bind().dialect.name == "sqlite":
        _rekey_holds_sqlite()
    else:
        _rekey_holds_postgresql()
    op.create_table(
        "server_checkouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=200), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("display", sa.String(length=255), nullable=True),
        sa.Column("handle", sa.String(length=100), nullable=True),
        sa.Column("version", sa.String(length=50), nullable=True),
        sa.Column("licenses", sa.Integer(), nullable=False),
        sa.Column("out_at", sa.DateTime(), nullable=False),
        sa.Column("in_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=50), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"]),
        sa.ForeignKeyConstraint(["server_id"], ["license_servers.id"]),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_checkouts_active_server",
        "server_checkouts",
        ["server_id", "feature"],
        unique=False,
        sqlite_where=sa.text("in_at IS NULL"),
        postgresql_where=sa.text("in_at IS NULL"),
    )
    op.create_index("ix_checkouts_session", "server_checkouts", ["session_id"], unique=False)
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=200), nullable=False),
        sa.Column("holder_kind", sa.String(length=20), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("licenses", sa.Integer(), nullable=False),
        sa.Column("seen_from", sa.DateTime(), nullable=False),
        sa.Column("seen_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.ForeignKeyConstraint(["server_id"], ["license_servers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "queued_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("feature", sa.String(length=200), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("licenses", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["pool_id"], ["license_pools.id"]),
        sa.ForeignKeyConstraint(["server_id"], ["license_servers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_queued_at", "queued_requests", ["at"], unique=False)
    op.create_table(
        "imported_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["license_servers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    raise NotImplementedError("revision 0004 is not reversible: restore the backup instead")
