"""The one source of "now" for the library; tests replace :func:`now`.

Timestamps are stored in the database as naive UTC; the helpers here convert at the boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_db(value: datetime | None) -> datetime | None:
    """`value` as naive UTC, the form the store keeps."""
    if value is None:
        return None
    return to_utc(value).replace(tzinfo=None)


def current_db_time(at: datetime | None = None) -> datetime:
    """`at` (or now) in the store's naive-UTC form."""
    result = to_db(at if at is not None else now())
    assert result is not None
    return result
