"""The tables of the session store.

A *hold* (table ``session_licenses``) is one license held by one session: it carries copies of the
session's user and the pool's product and type so that seat counts and history queries read one
narrow, well-indexed table. ``released_at`` is NULL while the license is held.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    DateTime,
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

NAMED = "named"
CONCURRENT = "concurrent"


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class LicenseType(Base):
    __tablename__ = "license_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # NAMED or CONCURRENT


class LicensePool(Base):
    __tablename__ = "license_pools"
    __table_args__ = (UniqueConstraint("product_id", "license_type_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    seats: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    idle_limit_seconds: Mapped[int | None] = mapped_column(Integer)


class NamedAssignment(Base):
    __tablename__ = "named_assignments"

    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(200), primary_key=True)
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
    user_name: Mapped[str] = mapped_column(String(200))
    # casefolded user name: what the case-insensitive user filter searches
    user_key: Mapped[str] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_activity: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(50))
    ended_by: Mapped[str | None] = mapped_column(String(200))


class Hold(Base):
    __tablename__ = "session_licenses"
    __table_args__ = (
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

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("license_pools.id"))
    user_name: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)


class Denial(Base):
    __tablename__ = "denials"
    __table_args__ = (
        Index("ix_denials_at", "at"),
        Index("ix_denials_pool_at", "pool_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    user_name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(255))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    license_type_id: Mapped[int] = mapped_column(ForeignKey("license_types.id"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("license_pools.id"))
    reason: Mapped[str] = mapped_column(String(50))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_actor_at", "actor", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    session_id: Mapped[int | None] = mapped_column(Integer)
    user_name: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(50))
    origin: Mapped[str | None] = mapped_column(String(255))
    # JSON text: e.g. the licenses a logout freed, or why an attempt was refused
    detail: Mapped[str | None] = mapped_column(Text)


class Account(Base):
    """A sign-in account of the served dashboard."""

    __tablename__ = "accounts"

    user_name: Mapped[str] = mapped_column(String(200), primary_key=True)
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
