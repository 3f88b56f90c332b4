"""Reprise RLM ``rlmstat -a`` (``rlmutil rlmstat -a``) snapshots, reconciled into the store.

The parts of the output read (the layout of the RLM License Administration manual's rlmstat
section, as RLM v12 and later print it; indented with tabs)::

    rlm status on rlm1 (port 5053), up 3d 02:11:09
    Todays Statistics (10:00:00), init time: Mon Mar  2 00:00:00 2026
    --------- ISV servers ----------
       Name           Port Running Restarts
       acme           5055   Yes      0
    acme license pool status on rlm1 (port 5055)
    solver v2026.0, pool: 1
        count: 8, # reservations: 2, inuse: 6, exp: 31-dec-2026
    acme license usage status on rlm1 (port 5055)
    solver v2026.0: ana@ws12 4/0 at 03/02 09:15  (handle: 41)
    Error connecting to "rlm" server

What is read:

* The snapshot's time: the first ``Todays Statistics (ELAPSED), init time: ...`` line, its init
  time plus the time elapsed (local to the server: ``timezone``); ``at`` overrides it.
* A pool's ``count`` is its free licenses and ``# reservations`` those reserved (RLM subtracts
  reservations from the floating licenses): the seats of the feature are their sum, and the
  pools of one feature (several versions) add up. ``inuse`` is the free licenses in use.
* A usage line ``FEATURE vVERSION: user@host N/R at MM/DD HH:MM (handle: H)`` is a checkout of
  N free and R reserved licenses (N + R in all), started then (the year is the snapshot's, or
  the one before for a later month/day). Its handle is kept as ``ISV HOST/PORT H``: what
  ``rlmremove`` needs (:mod:`.remove`: ``{isv} {handle_host} {handle_port} {handle_id}``).
* Reservations not used by a listed checkout count as in use while listed (as ``lmstat``'s
  RESERVATIONs do), one per feature and ISV server.
* ``Error connecting to "NAME" server`` or an ISV server not running in the ``ISV servers``
  table: the server is down, and the snapshot changes nothing (:class:`ServerDown`).

The snapshot is reconciled as every snapshot is (:mod:`.snapshot`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Unpack
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from .. import clock
from ..db import store_operation
from ..errors import InvalidInput
from .flexlm_log import MONTHS
from .snapshot import (
    FeatureStatus,
    Listed,
    Reserved,
    Snapshot,
    SnapshotOptions,
    SnapshotResult,
    import_snapshot,
)

WHAT = "rlmstat -a output"

MARKERS = re.compile(
    r"Reprise Software|^\s*rlm status on |ISV server status on |license (?:pool|usage) status on "
    r'|Error connecting to "',
    re.MULTILINE,
)
TODAY = re.compile(
    r"^Todays Statistics \((?:(\d+)d )?(\d+):(\d{2}):(\d{2})\), init time: \w{3} (\w{3})\s+"
    r"(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2}) (\d{4})\s*$"
)
RLM_UP = re.compile(r"^rlm status on (\S+) \(port (\d+)\)")
ISV_TABLE = re.compile(r"^-+ ISV servers -+$")
ISV_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(Yes|No)\s+(\d+)$")
SECTION = re.compile(
    r"^(\S+) (license pool status|license usage status|ISV server status) on (\S+) \(port (\d+)\)"
)
SEPARATOR = re.compile(r"^-{6,}$")
CANNOT_CONNECT = re.compile(r'^Error connecting to "([^"]+)" server')
POOL = re.compile(r"^(\S+) v(\S+?)(?:, pool: \d+)?$")
COUNT = re.compile(
    r"^count: (\d+|[A-Za-z]+), # reservations: (\d+), inuse: (\d+)(?:, exp: \S+)?\s*$"
)
USAGE_START = re.compile(r"^\S+ v\S+: ")  # a usage line, whole or not
USAGE = re.compile(
    r"^(?P<feature>\S+) v(?P<version>\S+): (?P<who>.+?) (?P<free>\d+)/(?P<reserved>\d+)"
    r" at (?P<month>\d{1,2})/(?P<day>\d{1,2}) (?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"\s+\(handle: (?P<handle>[^\s)]+)\)(?P<rest>.*)$"
)


def _printed_at(line: str, tz: ZoneInfo) -> datetime | None:
    """Naive UTC of a ``Todays Statistics`` line (None: not such a line, or impossible)."""
    match = TODAY.match(line)
    if match is None:
        return None
    days, hh, mm, ss, month, day, h, m, s, year = match.groups()
    number = MONTHS.get(month)
    try:
        init = datetime(int(year), number or 0, int(day), int(h), int(m), int(s), tzinfo=tz)
    except ValueError:
        return None
    elapsed = timedelta(days=int(days or 0), hours=int(hh), minutes=int(mm), seconds=int(ss))
    return (init + elapsed).astimezone(UTC).replace(tzinfo=None)


def _start(month: int, day: int, hour: int, minute: int, today: date, tz: ZoneInfo) -> datetime:
    """Naive UTC of a usage line's month/day time (the year: today's, or the one before)."""
    year = today.year - 1 if (month, day) > (today.month, today.day) else today.year
    local = datetime(year, month, day, hour, minute, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


class _Parser:
    def __init__(self, source: str, tz: ZoneInfo) -> None:
        self.source, self.tz = source, tz
        self.printed: datetime | None = None
        self.isv_table = False
        self.section: str | None = None
        self.isv = self.host = self.port = ""
        self.pool: str | None = None  # the feature of the pool line read last
        self.up = False
        self.down: list[str] = []
        self.features: dict[str, FeatureStatus] = {}
        self.reservations: dict[tuple[str, str], int] = {}  # (feature, isv) -> reserved
        self.usage: list[tuple[int, re.Match[str], str, str, str]] = []

    def bad(self, number: int, what: str) -> InvalidInput:
        return InvalidInput(f"{self.source}, line {number}: truncated or malformed {what} line")

    def line(self, number: int, raw: str) -> None:
        line = raw.strip()
        if not line:
            return
        if self.printed is None and line.startswith("Todays Statistics"):
            self.printed = _printed_at(line, self.tz)
            if self.printed is None:
                raise self.bad(number, "'Todays Statistics'")
            return
        failed = CANNOT_CONNECT.match(line)
        if failed:
            self.down.append(f"{failed.group(1)} server: cannot connect")
            return
        if RLM_UP.match(line):
            self.up = True
            return
        if ISV_TABLE.match(line):
            self.isv_table, self.section = True, None
            return
        section = SECTION.match(line)
        if section:
            self.isv, kind, self.host, self.port = section.groups()
            self.section, self.isv_table, self.pool = kind, False, None
            self.up = True
            return
        if SEPARATOR.match(line):
            self.section, self.isv_table = None, False
            return
        if self.isv_table:
            row = ISV_ROW.match(line)
            if row and row.group(3) == "No":
                self.down.append(f"ISV server {row.group(1)}: not running")
            return
        if self.section == "license pool status":
            self._pool_line(number, line)
        elif self.section == "license usage status" and USAGE_START.match(line):
            usage = USAGE.match(line)
            if usage is None:
                raise self.bad(number, "license usage")
            self.usage.append((number, usage, self.isv, self.host, self.port))

    def _pool_line(self, number: int, line: str) -> None:
        if line.startswith("count:"):
            count = COUNT.match(line)
            if count is None or self.pool is None:
                raise self.bad(number, "license pool count")
            free, reserved, in_use = count.groups()
            status = self.features.setdefault(self.pool, FeatureStatus())
            if free.isdigit():  # else UNCOUNTED, unlimited...: seats unknown
                status.issued = (status.issued or 0) + int(free) + int(reserved)
            status.in_use = (status.in_use or 0) + int(in_use) + int(reserved)
            key = (self.pool, self.isv)
            self.reservations[key] = self.reservations.get(key, 0) + int(reserved)
            return
        pool = POOL.match(line)
        if pool:
            self.pool = pool.group(1)

    def snapshot(self, at: datetime | None) -> Snapshot:
        when = clock.current_db_time(at) if at is not None else self.printed
        if when is None and self.down:  # reported, never applied: any time will do
            when = clock.current_db_time()
        if when is None:
            raise InvalidInput(
                f"{self.source} has no 'Todays Statistics ... init time' line to date it: "
                "give the time it was taken (--at)"
            )
        today = when.replace(tzinfo=UTC).astimezone(self.tz).date()
        snapshot = Snapshot(at=when, kind="rlm", tool="rlmstat", down=self.down)
        snapshot.features = self.features
        used: dict[tuple[str, str], int] = {}
        for number, usage, isv, host, port in self.usage:
            user, at_sign, user_host = usage["who"].rpartition("@")
            free, reserved = int(usage["free"]), int(usage["reserved"])
            if not at_sign or not user or free + reserved < 1:
                raise self.bad(number, "license usage")
            try:
                start = _start(
                    int(usage["month"]),
                    int(usage["day"]),
                    int(usage["hour"]),
                    int(usage["minute"]),
                    today,
                    self.tz,
                )
            except ValueError:
                raise InvalidInput(f"{self.source}, line {number}: impossible start date") from None
            feature = usage["feature"]
            snapshot.features.setdefault(feature, FeatureStatus())
            snapshot.checkouts.append(
                Listed(
                    feature=feature,
                    user=user,
                    host=user_host or None,
                    display=None,
                    version=f"v{usage['version']}",
                    handle=f"{isv} {host}/{port} {usage['handle']}",
                    licenses=free + reserved,
                    start=min(start, when),
                )
            )
            used[(feature, isv)] = used.get((feature, isv), 0) + reserved
        for (feature, isv), reserved in self.reservations.items():
            unused = reserved - used.get((feature, isv), 0)
            if unused > 0:
                snapshot.reservations[(feature, "isv", isv)] = Reserved(feature, "isv", isv, unused)
        return snapshot


def looks_like(text: str) -> bool:
    """Whether `text` is an RLM status output rather than a FlexLM one."""
    return MARKERS.search(text) is not None and "Flexible License Manager" not in text


def parse(
    text: str, *, source: str, at: datetime | None = None, tz: ZoneInfo | None = None
) -> Snapshot:
    """Parse ``rlmstat -a`` output `text` (`source` names it in errors).

    `at` (aware, or naive UTC) overrides the snapshot's own time; `tz` is the server's zone.
    Raises :class:`InvalidInput` for text that is not such an output.
    """
    if not MARKERS.search(text):
        raise InvalidInput(f"{source} is not {WHAT} (no Reprise, rlm or ISV server status line)")
    parser = _Parser(source, tz or ZoneInfo("UTC"))
    for number, line in enumerate(text.splitlines(), start=1):
        parser.line(number, line)
    if not parser.up and not parser.down:
        raise InvalidInput(f"{source} is not {WHAT} (no rlm or ISV server status on any line)")
    return parser.snapshot(at)


@store_operation
def import_rlmstat(
    engine: Engine, text: str, *, source: str = "rlmstat output", **options: Unpack[SnapshotOptions]
) -> SnapshotResult:
    """Parse and apply one ``rlmstat -a`` snapshot of the RLM server `server` (one transaction).

    Raises :class:`InvalidInput` for text that is not such an output and
    :class:`~licusage.sources.snapshot.ServerDown` when it reports the rlm server or an ISV
    server down; in both cases nothing changes.
    """
    return import_snapshot(engine, parse, text, source=source, **options)
