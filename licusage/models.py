"""The tables of the session store.

A *hold* (table ``session_licenses``) is one license held by one session: it carries copies of the
session's user and the pool's product and type so that seat counts and history queries read one
narrow, well-indexed table. ``released_at`` is NULL while the license is held.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .validation import MAX_HOST_LENGTH, MAX_NAME_LENGTH, MAX_USER_LENGTH

NAMED = "named"
CONCURRENT = "concurrent"

# how a pool counts seats in use (``license_pools.counting``)
PER_USER = "per_user"  # a user's sessions share one seat (the app's Concurrent User)
PER_CHECKOUT = "per_checkout"  # floating licenses: the sum of licenses checked out

# where a session came from (``sessions.source``): the app API, else a license server's name
APP_SOURCE = "app"


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)


class LicenseType(Base):
    __tablename__ = "license_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # NAMED or CONCURRENT


class LicensePool(Base):
    __tablename__ = "license_pools"
    __table_args__ = (UniqueConstraint("product_id", "license_type_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    # None: not known (a FlexLM debug log alone says nothing about seats)
    seats: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    idle_limit_seconds: Mapped[int | None] = mapped_column(Integer)
    counting: Mapped[str] = mapped_column(String(20), server_default=PER_USER)


class PoolSeats(Base):
    """The seats of a pool in force from ``valid_from`` until the pool's next entry."""

    __tablename__ = "pool_seats"
    __table_args__ = (UniqueConstraint("pool_id", "valid_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"))
    valid_from: Mapped[datetime] = mapped_column(DateTime)
    seats: Mapped[int | None] = mapped_column(Integer)  # None: unknown from then on
    origin: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))  # e.g. "lmstat SERVER"


class LicenseServer(Base):
    """A FlexLM or RLM license server that sessions are read from."""

    __tablename__ = "license_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "flexlm" or "rlm"
    # how to remove a checkout on the server: an argument template (see licusage.sources.remove)
    remove_command: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class NamedAssignment(Base):
    __tablename__ = "named_assignments"

    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH), primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(DateTime)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        # covers the user filter (``user_key LIKE``) too: SQLite checks it on the index alone.
        # On PostgreSQL, migration 0002 also adds a trigram index on user_key, which is not
        # declared here (see licusage.migrations.trigram).
        Index(
            "ix_sessions_active_last_activity",
            "last_activity",
            "id",
            "user_key",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_sessions_started_at", "started_at"),
        Index("ix_sessions_user_name", "user_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    # casefolded user name: what the case-insensitive user filter searches
    user_key: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    host: Mapped[str | None] = mapped_column(String(MAX_HOST_LENGTH))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_activity: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(50))
    ended_by: Mapped[str | None] = mapped_column(String(MAX_USER_LENGTH))
    source: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), server_default=APP_SOURCE)
    server_id: Mapped[int | None] = mapped_column(ForeignKey("license_servers.id"))
    display: Mapped[str | None] = mapped_column(String(255))


class Hold(Base):
    """One license held by a session over a period in which its count stayed the same.

    A session holds at most one active entry per product; when a license server session checks
    out more (or returns some) of a product, the entry is released and a new one with the new
    ``licenses`` starts at the same moment, so the history of counts is exact.
    """

    __tablename__ = "session_licenses"
    __table_args__ = (
        Index(
            "ux_holds_active_session_product",
            "session_id",
            "product_id",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index(
            "ix_holds_active_pool_user",
            "pool_id",
            "user_name",
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_holds_pool_granted", "pool_id", "granted_at"),
        # history queries compare released_at with a time: NULLs (held licenses) need no entry
        Index(
            "ix_holds_released_at",
            "released_at",
            sqlite_where=text("released_at IS NOT NULL"),
            postgresql_where=text("released_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"))
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    granted_at: Mapped[datetime] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)
    licenses: Mapped[int] = mapped_column(Integer, server_default="1")


class Checkout(Base):
    """One checkout on a license server: what is needed to act on it (``lmremove``)."""

    __tablename__ = "server_checkouts"
    __table_args__ = (
        Index(
            "ix_checkouts_active_server",
            "server_id",
            "feature",
            sqlite_where=text("in_at IS NULL"),
            postgresql_where=text("in_at IS NULL"),
        ),
        Index("ix_checkouts_session", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("license_servers.id"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    feature: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    host: Mapped[str | None] = mapped_column(String(MAX_HOST_LENGTH))
    display: Mapped[str | None] = mapped_column(String(255))
    handle: Mapped[str | None] = mapped_column(String(100))  # the server's handle or "port/handle"
    version: Mapped[str | None] = mapped_column(String(50))
    licenses: Mapped[int] = mapped_column(Integer)
    out_at: Mapped[datetime] = mapped_column(DateTime)
    in_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(50))


class Reservation(Base):
    """Licenses a server keeps for a HOST, GROUP, USER...: counted as in use while seen."""

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("license_servers.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"))
    feature: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    holder_kind: Mapped[str] = mapped_column(String(20))  # HOST, GROUP, USER, DISPLAY, ...
    holder: Mapped[str] = mapped_column(String(255))
    licenses: Mapped[int] = mapped_column(Integer)
    seen_from: Mapped[datetime] = mapped_column(DateTime)
    seen_until: Mapped[datetime | None] = mapped_column(DateTime)  # None: still in force


class QueuedRequest(Base):
    """A request a server put in its queue (FlexLM ``QUEUED:``, RLM ``QUE``)."""

    __tablename__ = "queued_requests"
    __table_args__ = (Index("ix_queued_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("license_servers.id"))
    at: Mapped[datetime] = mapped_column(DateTime)
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    host: Mapped[str | None] = mapped_column(String(MAX_HOST_LENGTH))
    feature: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("license_pools.id"))
    licenses: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class ImportedFile(Base):
    """How far a log file was imported: the bytes read, their fingerprint, the parser's state."""

    __tablename__ = "imported_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("license_servers.id"))
    format: Mapped[str] = mapped_column(String(20))  # "flexlm-log", "rlm-log"
    path: Mapped[str] = mapped_column(Text)  # where it was last read from (information only)
    offset: Mapped[int] = mapped_column(BigInteger)  # bytes read (whole lines only)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of those bytes
    lines: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)  # JSON: the parser's date and clock at `offset`
    imported_at: Mapped[datetime] = mapped_column(DateTime)


class Denial(Base):
    __tablename__ = "denials"
    __table_args__ = (
        Index("ix_denials_at", "at"),
        Index("ix_denials_pool_at", "pool_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    host: Mapped[str | None] = mapped_column(String(MAX_HOST_LENGTH))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("license_pools.id"))
    reason: Mapped[str] = mapped_column(String(50))
    # the server's own words (FlexLM "Licensed number of users already reached. (-4,342)")
    detail: Mapped[str | None] = mapped_column(Text)
    server_id: Mapped[int | None] = mapped_column(ForeignKey("license_servers.id"))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_actor_at", "actor", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(MAX_USER_LENGTH))
    action: Mapped[str] = mapped_column(String(50))
    session_id: Mapped[int | None] = mapped_column(Integer)
    user_name: Mapped[str | None] = mapped_column(String(MAX_USER_LENGTH))
    reason: Mapped[str | None] = mapped_column(String(50))
    origin: Mapped[str | None] = mapped_column(String(255))
    # JSON text: e.g. the licenses a logout freed, or why an attempt was refused
    detail: Mapped[str | None] = mapped_column(Text)


class Account(Base):
    """A sign-in account of the served dashboard."""

    __tablename__ = "accounts"

    user_name: Mapped[str] = mapped_column(String(MAX_USER_LENGTH), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


# Core tables, for the queries and bulk statements
products_t = _table(Product)
types_t = _table(LicenseType)
pools_t = _table(LicensePool)
assignments_t = _table(NamedAssignment)
sessions_t = _table(Session)
holds_t = _table(Hold)
denials_t = _table(Denial)
audit_t = _table(AuditEvent)
accounts_t = _table(Account)
pool_seats_t = _table(PoolSeats)
servers_t = _table(LicenseServer)
checkouts_t = _table(Checkout)
reservations_t = _table(Reservation)
queued_t = _table(QueuedRequest)
imported_files_t = _table(ImportedFile)


class ApiToken(Base):
    """A token an application presents to the HTTP API (``Authorization: Bearer ...``).

    Only the SHA-256 of the token is kept: tokens are 256-bit random strings, so a fast hash is
    as safe as a slow one and lets every request be checked by one indexed lookup.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    scope: Mapped[str] = mapped_column(String(50))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class AlertFiring(Base):
    """One firing of an alert rule for one subject (a pool, a source, an expiry threshold).

    Open while ``cleared_at`` is NULL; at most one open firing per (rule, subject), which is
    what makes an alert fire once until it clears, even with several servers evaluating.
    """

    __tablename__ = "alert_firings"
    __table_args__ = (
        Index(
            "ux_alert_firings_open",
            "rule",
            "subject",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
        Index("ix_alert_firings_fired_at", "fired_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(500))
    message: Mapped[str] = mapped_column(Text)
    fired_at: Mapped[datetime] = mapped_column(DateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime)
    # JSON text: channel -> "sent" or the error of the delivery
    delivery: Mapped[str | None] = mapped_column(Text)


class RollupHour(Base):
    """One pool's use in one complete UTC hour (see :mod:`licusage.rollup`): the exact peak in
    use and the first instant it was reached, the lowest in use, the seat-seconds used (also
    exactly, in seat-microseconds) and the denials recorded. Hours with none of them have no
    row (nobody held the pool: 0 in use throughout)."""

    __tablename__ = "rollup_hours"

    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)  # naive UTC, on the hour
    peak: Mapped[int] = mapped_column(Integer)
    seat_seconds: Mapped[float] = mapped_column(Float)
    denials: Mapped[int] = mapped_column(Integer)
    low: Mapped[int] = mapped_column(Integer)  # the lowest in use during the hour
    # the first instant of the hour with `peak` in use (naive UTC); NULL when the peak is 0
    peak_at: Mapped[datetime | None] = mapped_column(DateTime)
    used_us: Mapped[int] = mapped_column(BigInteger)  # seat-microseconds: seat_seconds, exact


class RollupLevels(Base):
    """How long each in-use count lasted in one pool's complete UTC hour, for an hour whose in
    use changed (``low < peak`` in its ``rollup_hours`` row): ``levels`` is ``"level
    microseconds level microseconds ..."``, levels ascending, the microseconds summing to the
    hour. Read only for the few hours an exact percentile or time near full depends on."""

    __tablename__ = "rollup_levels"

    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)  # naive UTC, on the hour
    levels: Mapped[str] = mapped_column(Text)


class RollupPool(Base):
    """How far a pool is rolled up: every hour before ``until`` (on the hour) has its rows,
    except the hours a ``rollup_dirty`` entry of the pool names. No row: nothing rolled up."""

    __tablename__ = "rollup_pools"

    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"), primary_key=True)
    until: Mapped[datetime] = mapped_column(DateTime)
    # bumped by every refresh: a refresh computed from an older snapshot does not write
    version: Mapped[int] = mapped_column(Integer, server_default="0")


class RollupDirty(Base):
    """A write changed the pool from ``hour`` on: its roll-up is recomputed from there.

    Written in the same transaction as the holds or denials it is about; deleted (by id) by
    the refresh that recomputed those hours."""

    __tablename__ = "rollup_dirty"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(Integer)  # no foreign key: a mark never blocks a write
    hour: Mapped[datetime] = mapped_column(DateTime)


api_tokens_t = _table(ApiToken)
alert_firings_t = _table(AlertFiring)
rollup_hours_t = _table(RollupHour)
rollup_levels_t = _table(RollupLevels)
rollup_pools_t = _table(RollupPool)
rollup_dirty_t = _table(RollupDirty)
