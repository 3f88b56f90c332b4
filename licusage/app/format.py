"""Turning query results into what the results table shows: local dates, short durations."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from .. import clock, durations, export

BASE_HEADERS = {
    "session_id": "ID",
    "user": "User",
    "host": "Host",
    "started_at": "Started",
    "last_activity": "Last Activity",
    "idle": "Idle",
}

# Idle is sent as whole seconds (so it sorts as a number) and drawn as "2h 05m" in the browser
IDLE_TEMPLATE = (
    "<% var s = Math.max(0, Math.floor(value)); var d = Math.floor(s / 86400); "
    "var h = Math.floor((s % 86400) / 3600); var m = Math.floor((s % 3600) / 60); "
    "var p = function (n) { return (n < 10 ? '0' : '') + n; }; %>"
    "<%= d > 0 ? d + 'd ' + p(h) + 'h' : (h > 0 ? h + 'h ' + p(m) + 'm' : m + 'm') %>"
)


def format_duration(value: timedelta | pd.Timedelta | float | None) -> str:
    """The table's short duration: ``45m``, ``2h 05m``, ``3d 04h`` (seconds below a minute count
    as 0m); :func:`licusage.durations.format_duration` to the minute."""
    if value is not None and not isinstance(value, timedelta) and pd.isna(value):
        return ""
    return durations.format_duration(value, seconds=False)


def local_zone(name: str | None) -> tzinfo | None:
    """The zone named by the browser (e.g. ``Europe/Paris``), or None for the server's own."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local_text(values: pd.Series, zone: tzinfo | None) -> pd.Series:
    """Aware UTC timestamps as ``YYYY-MM-DD HH:MM`` in `zone` (default: the server's zone)."""
    target = viewer_zone(zone)
    local = values.dt.tz_convert(target).dt.tz_localize(None).to_numpy("datetime64[m]")
    if not len(local):
        return pd.Series([], index=values.index, dtype=object)
    text = np.char.replace(np.datetime_as_string(local, unit="m"), "T", " ")
    return pd.Series(np.where(np.isnat(local), "", text), index=values.index, dtype=object)


def local_time(at: datetime, zone: tzinfo | None) -> str:
    """`at` (aware, or naive UTC) as ``HH:MM:SS`` in `zone` (default: the server's zone)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(viewer_zone(zone)).strftime("%H:%M:%S")


EXPIRY_SOON = timedelta(days=30)


def expiry_note(
    expires_at: datetime | None, zone: tzinfo | None, now: datetime | None = None
) -> str:
    """A gauge's word on a pool's expiry (aware UTC; None or NaT: none), in `zone`: ``expired
    2019-01-01`` (at midnight), ``expires 2026-03-21 18:00`` within :data:`EXPIRY_SOON`, else
    nothing."""
    soon = _soon(expires_at, zone, now)
    if soon is None:
        return ""
    left, local = soon
    return f"{'expired' if left <= timedelta(0) else 'expires'} {local}"


def seats_drop_note(
    pool: Mapping[Any, Any], zone: tzinfo | None, now: datetime | None = None
) -> str:
    """A gauge's word on seats a pool (a ``queries.pool_usage`` record) loses before it
    expires, within :data:`EXPIRY_SOON`: ``2 seats expire 2018-10-01``, else nothing."""
    seats, coming, at = pool.get("seats"), pool.get("next_seats"), pool.get("next_seats_at")
    if at is None or pd.isna(seats) or pd.isna(coming) or coming >= seats:
        return ""
    expires_at = pool.get("expires_at")
    if expires_at is not None and not pd.isna(expires_at) and expires_at == at:
        return ""  # the pool's own expiry: expiry_note says it
    soon = _soon(at, zone, now)
    if soon is None:
        return ""
    lost = int(seats) - int(coming)
    return f"1 seat expires {soon[1]}" if lost == 1 else f"{lost:,} seats expire {soon[1]}"


def _soon(
    at: datetime | None, zone: tzinfo | None, now: datetime | None
) -> tuple[pd.Timedelta, str] | None:
    """How long until `at` (aware UTC; None or NaT: never) and `at` in `zone` (the time of day
    left out at midnight), when that is within :data:`EXPIRY_SOON`."""
    if at is None or pd.isna(at):
        return None
    moment = pd.Timestamp(at)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment
    left = moment - pd.Timestamp(clock.to_utc(now or clock.now()))
    if left > EXPIRY_SOON:
        return None
    local = moment.tz_convert(viewer_zone(zone))
    return left, f"{local:%Y-%m-%d}" + (
        "" if local.hour == local.minute == 0 else f" {local:%H:%M}"
    )


def viewer_zone(zone: tzinfo | None) -> tzinfo:
    """`zone`, else the server's own."""
    if zone is not None:
        return zone
    own = datetime.now().astimezone().tzinfo
    assert own is not None
    return own


def zone_name(zone: tzinfo) -> str:
    """What to call `zone` on a page: its IANA name (``Europe/Paris``), else its abbreviation."""
    return getattr(zone, "key", None) or zone.tzname(None) or "local time"


def day_bounds(first: date, last: date, zone: tzinfo | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the days `first` to `last` (inclusive, either order) in `zone`."""
    target = viewer_zone(zone)
    if last < first:
        first, last = last, first
    start = datetime.combine(first, time(0), tzinfo=target)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=target)
    return clock.to_utc(start), clock.to_utc(end)


def display_frame(usage: pd.DataFrame, products: list[str], zone: tzinfo | None) -> pd.DataFrame:
    """The results table's frame from :func:`licusage.queries.session_usage`'s.

    Index ``Session`` (the session id); columns ``ID`` (the session id), ``User``, ``Host``,
    ``Started``, ``Last Activity`` (local time text that sorts), ``Idle`` (whole seconds), one
    per product.
    """
    frame = pd.DataFrame(
        {
            "ID": usage["session_id"].astype("int64").to_numpy(),
            "User": usage["user"].astype(object).to_numpy(),
            "Host": usage["host"].fillna("").astype(object).to_numpy(),
            "Started": _local_text(usage["started_at"], zone).to_numpy(),
            "Last Activity": _local_text(usage["last_activity"], zone).to_numpy(),
            "Idle": (usage["idle"].dt.total_seconds().fillna(0).astype("int64")).to_numpy(),
        },
        index=pd.Index(usage["session_id"].to_numpy(), name="Session"),
    )
    for product in products:
        frame[product] = usage[product].fillna("").astype(object).to_numpy()
    return frame


HEADER_KEYS = {header: key for key, header in BASE_HEADERS.items()}


def sort_keys(sorters: list[dict[str, str]], products: list[str]) -> list[tuple[str, bool]]:
    """Tabulator's header sorters (``{"field": "User", "dir": "asc"}``) as the (column,
    ascending) pairs of :func:`licusage.queries.session_usage_page`; unknown fields are left
    out."""
    keys = []
    for sorter in sorters:
        field = str(sorter.get("field", ""))
        key = HEADER_KEYS.get(field, field if field in products else None)
        if key is not None:
            keys.append((key, sorter.get("dir", "asc") != "desc"))
    return keys


def usage_csv(frames: Iterable[pd.DataFrame], out: IO[str]) -> None:
    """Write :func:`licusage.queries.session_usage` frames to `out` by the rules of
    :mod:`licusage.export`, as ``licusage sessions --format csv`` does (the same file)."""
    writer = None
    for frame in frames:
        if writer is None:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow([export.neutralise(str(c)) for c in frame.columns])
        for row in frame.itertuples(index=False):
            writer.writerow([export.cell(value) for value in row])
