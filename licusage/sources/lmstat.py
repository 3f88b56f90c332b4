"""FlexLM ``lmutil lmstat -a`` snapshots: what is out right now, reconciled into the store.

The parts of the output read::

    Flexible License Manager status on Fri 10/20/2017 17:02
    host1: license server UP v11.13
    host3: Cannot connect to license server system. (-15,570:115 "Operation now in progress")
        vendor1: UP v11.13
    Users of feature1:  (Total of 1814 licenses issued;  Total of 1206 licenses in use)
        10 RESERVATIONs for HOST HOSTPC12 (host3.domain.net/27002)
        user1 server9 /dev/tty (v61.9) (host3.domain.net/27002 18856), start Fri 10/20 14:12, 16 licenses

The seats of each feature are the licenses issued; RESERVATIONs count as in use while listed. A
snapshot is reconciled into the store as every snapshot is (:mod:`.snapshot`): new checkouts
become sessions, those no longer listed end, a server or vendor daemon down changes nothing
(:class:`ServerDown`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Unpack
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from .. import clock
from ..db import store_operation
from ..errors import InvalidInput
from .snapshot import (
    FeatureStatus,
    Listed,
    Queued,
    Reserved,
    ServerDown,
    Snapshot,
    SnapshotOptions,
    SnapshotResult,
    import_snapshot,
    read_text,
)

__all__ = ["ServerDown", "Snapshot", "SnapshotResult", "import_lmstat", "parse", "read_text"]

STATUS_AT = re.compile(
    r"Flexible License Manager status on \w{3} (\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})"
)
SERVER_LINE = re.compile(
    r"^\s*(\S+): (license server UP.*|Cannot connect.*|license server DOWN.*)$"
)
VENDOR_LINE = re.compile(r"^\s*(\S+): (UP|DOWN)\b(.*)$")
USERS_OF = re.compile(
    r"^Users of (\S+?):\s+\((?:Total of (\d+) licenses? issued;\s+Total of (\d+) licenses? in use"
    r"|(.*))\)\s*$"
)
RESERVATION = re.compile(r"^\s+(\d+) RESERVATIONs? for (\S+) (.+?) \((\S+)/(\d+)\)\s*$")
QUEUED_LINE = re.compile(
    r"^\s+(?P<who>.+?) \((?P<version>v[^)]*)\) \((?P<server>\S+)/(?P<port>\d+) (?P<handle>\d+)\)"
    r" queued for (?P<licenses>\d+) licenses?\s*$"
)
HANDLE = re.compile(r"\(v[^)]*\) \(\S+/\d+")  # "(v61.9) (host3/27002": a checkout's line
CHECKOUT = re.compile(
    r"^\s+(?P<who>.+?) \((?P<version>v[^)]*)\) \((?P<server>\S+)/(?P<port>\d+) (?P<handle>\d+)\),"
    r" start \w{3} (?P<month>\d{1,2})/(?P<day>\d{1,2}) (?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?:, (?P<licenses>\d+) licenses?)?(?P<rest>.*)$"
)


def _local(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def _split_who(who: str) -> tuple[str, str | None, str | None]:
    """user, host, display from the text before the version (user names may hold spaces)."""
    parts = who.split()
    if len(parts) == 1:
        return parts[0], None, None
    if len(parts) == 2:
        return parts[0], parts[1], None
    return " ".join(parts[:-2]), parts[-2], parts[-1]


def parse(
    text: str, *, source: str, at: datetime | None = None, tz: ZoneInfo | None = None
) -> Snapshot:
    """Parse ``lmstat -a`` output `text` (`source` names it in errors).

    `at` (aware, or naive UTC) overrides the snapshot's own time; `tz` is the server's zone.
    Raises :class:`InvalidInput` for text that is not such an output.
    """
    tz = tz or ZoneInfo("UTC")
    stamp = STATUS_AT.search(text)
    if stamp is None and at is None:
        raise InvalidInput(
            f"{source} is not lmstat -a output (no 'Flexible License Manager status on' line)"
        )
    if "License server status" not in text and "Users of " not in text:
        raise InvalidInput(f"{source} is not lmstat -a output (no license server status)")
    if stamp is not None:
        month, day, year, hour, minute = (int(g) for g in stamp.groups())
        try:
            printed = _local(date(year, month, day), hour, minute, tz)
        except ValueError:
            raise InvalidInput(f"{source}: impossible date in {stamp.group(0)!r}") from None
        local_today = date(year, month, day)
    else:
        printed = None
        local_today = clock.to_utc(at).astimezone(tz).date() if at is not None else date.today()
    when = clock.current_db_time(at) if at is not None else printed
    assert when is not None
    snapshot = Snapshot(at=when)
    feature: str | None = None
    up = 0
    for number, line in enumerate(text.splitlines(), start=1):
        server = SERVER_LINE.match(line)
        if server:
            if server.group(2).startswith("license server UP"):
                up += 1
            else:
                snapshot.down.append(f"{server.group(1)}: {server.group(2).strip()}")
            continue
        users = USERS_OF.match(line)
        if users:
            feature = users.group(1)
            status = snapshot.features.setdefault(feature, FeatureStatus())
            if users.group(2) is not None:
                status.issued, status.in_use = int(users.group(2)), int(users.group(3))
            elif "Error" in (users.group(4) or ""):
                snapshot.down.append(f"feature {feature}: {users.group(4).strip()}")
            continue
        if feature is None:
            vendor = VENDOR_LINE.match(line)
            if vendor and vendor.group(2) == "DOWN":
                snapshot.down.append(f"vendor daemon {vendor.group(1)}: DOWN{vendor.group(3)}")
            continue
        reserved = RESERVATION.match(line)
        if reserved:
            count, kind, holder = int(reserved.group(1)), reserved.group(2), reserved.group(3)
            snapshot.reservations[(feature, kind, holder)] = Reserved(feature, kind, holder, count)
            continue
        queued = QUEUED_LINE.match(line)
        if queued:
            # "user host display 2017.06 (v2017.06) (...) queued for 1 license"
            who = re.sub(r" \d+(?:\.\d+)*$", "", queued["who"])
            user, host, _ = _split_who(who)
            snapshot.queued.append(
                Queued(
                    feature,
                    user,
                    host,
                    f"{queued['server']}/{queued['port']} {queued['handle']}",
                    int(queued["licenses"]),
                )
            )
            continue
        if ", start " in line or HANDLE.search(line):
            checkout = CHECKOUT.match(line)
            if checkout is None:
                raise InvalidInput(f"{source}, line {number}: truncated or malformed checkout line")
            user, host, display = _split_who(checkout["who"])
            month, day = int(checkout["month"]), int(checkout["day"])
            year = local_today.year
            if (month, day) > (local_today.month, local_today.day):
                year -= 1  # a checkout from last year (the listing has no year)
            try:
                start_day = date(year, month, day)
            except ValueError:
                raise InvalidInput(f"{source}, line {number}: impossible start date") from None
            start = _local(start_day, int(checkout["hour"]), int(checkout["minute"]), tz)
            snapshot.checkouts.append(
                Listed(
                    feature=feature,
                    user=user,
                    host=host,
                    display=display,
                    version=checkout["version"],
                    handle=f"{checkout['server']}/{checkout['port']} {checkout['handle']}",
                    licenses=int(checkout["licenses"] or 1),
                    start=min(start, when),
                )
            )
    if not up and not snapshot.down:
        raise InvalidInput(f"{source} is not lmstat -a output (no 'license server UP' line)")
    return snapshot


@store_operation
def import_lmstat(
    engine: Engine, text: str, *, source: str = "lmstat output", **options: Unpack[SnapshotOptions]
) -> SnapshotResult:
    """Parse and apply one ``lmstat -a`` snapshot of `server` (one transaction).

    Raises :class:`InvalidInput` for text that is not such an output and :class:`ServerDown`
    when it reports a server or vendor daemon down; in both cases nothing changes.
    """
    return import_snapshot(engine, parse, text, source=source, **options)
