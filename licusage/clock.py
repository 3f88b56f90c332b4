"""The one source of "now" for the library; tests replace :func:`now`.

Timestamps are stored in the database as naive UTC; the helpers here convert at the boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@contextmanager
def frozen(at: datetime) -> Iterator[datetime]:
    """Within the block, :func:`now` is `at` (made UTC; a naive time is taken as UTC): read a
    store as of the moment it was generated. The previous clock comes back at the end."""
    global now
    moment = to_utc(at)
    before = now
    now = lambda: moment  # noqa: E731 (replaced in the module, as tests do)
    try:
        yield moment
    finally:
        now = before


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


def zone(name: str | None) -> ZoneInfo:
    """The time zone `name` (IANA, e.g. ``Europe/Paris``); UTC when None. Raises
    :class:`~licusage.errors.InvalidInput` for a name no zone has."""
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)"
        ) from None
