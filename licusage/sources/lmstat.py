"""FlexLM ``lmutil lmstat -a`` snapshots: what is out right now, reconciled into the store.

The parts of the output read::

    Flexible License Manager status on Fri 10/20/2017 17:02
    host1: license server UP v11.13
    host3: Cannot connect to license server system. (-15,570:115 "Operation now in progress")
        vendor1: UP v11.13
    Users of feature1:  (Total of 1814 licenses issued;  Total of 1206 licenses in use)
        10 RESERVATIONs for HOST HOSTPC12 (host3.domain.net/27002)
        user1 server9 /dev/tty (v61.9) (host3.domain.net/27002 18856), start Fri 10/20 14:12, 16 licenses

A snapshot **reconciles** the store: a checkout listed and not yet in the store becomes part of
its ``user@host``'s session (started at the listed start time), one in the store and no longer
listed ends at the snapshot's time (reason ``checked_in``), the seats of each feature are the
licenses issued (kept in the seat history), and reservations are kept as in use while listed.
The same snapshot twice changes nothing. A snapshot in which a server or vendor daemon is down
changes nothing at all: it is reported (:class:`ServerDown`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import clock
from ..catalog import ensure_pool, read_catalog
from ..db import store_operation, write
from ..errors import InvalidInput, LicusageError
from ..models import queued_t, reservations_t
from .mapping import FeatureMap
from .writer import CHECKED_IN, Counts, ServerWriter, zone

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


class ServerDown(LicusageError):
    """The snapshot says a license server or vendor daemon is down: nothing was changed."""


@dataclass(frozen=True)
class Listed:
    """One checkout an ``lmstat`` lists."""

    feature: str
    user: str
    host: str | None
    display: str | None
    version: str
    handle: str  # "server/port handle", as lmremove -h wants them
    licenses: int
    start: datetime  # naive UTC


@dataclass(frozen=True)
class Reserved:
    feature: str
    holder_kind: str
    holder: str
    licenses: int


@dataclass(frozen=True)
class Queued:
    """A request an ``lmstat`` lists as queued."""

    feature: str
    user: str
    host: str | None
    handle: str
    licenses: int


@dataclass
class FeatureStatus:
    issued: int | None = None  # None: uncounted, or lmstat said nothing
    in_use: int | None = None  # as lmstat printed it


@dataclass
class Snapshot:
    """A parsed ``lmstat -a``."""

    at: datetime  # naive UTC
    down: list[str] = field(default_factory=list)
    features: dict[str, FeatureStatus] = field(default_factory=dict)
    checkouts: list[Listed] = field(default_factory=list)
    reservations: dict[tuple[str, str, str], Reserved] = field(default_factory=dict)
    queued: list[Queued] = field(default_factory=list)

    def listed_in_use(self, feature: str) -> int:
        """Licenses out plus reserved for `feature`, as this snapshot lists them."""
        out = sum(c.licenses for c in self._unique() if c.feature == feature)
        return out + sum(r.licenses for r in self.reservations.values() if r.feature == feature)

    def _unique(self) -> list[Listed]:
        return list({_key(c): c for c in self.checkouts}.values())


def _key(c: Listed) -> tuple[str, str, str | None, str | None, str]:
    return (c.feature, c.user, c.host, c.display, c.handle)


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


@dataclass
class SnapshotResult:
    """What a snapshot changed."""

    at: datetime
    counts: Counts
    features: int = 0
    seats_changed: int = 0
    reservations_started: int = 0
    reservations_ended: int = 0
    # features whose printed "in use" differs from what the snapshot lists:
    # feature -> (printed, listed checkouts + reservations)
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)


def reconcile(
    conn: Connection, snapshot: Snapshot, *, server: str, mapping: FeatureMap | None = None
) -> SnapshotResult:
    """Apply `snapshot` of `server` inside the caller's transaction (see the module doc)."""
    if snapshot.down:
        raise ServerDown(
            f"server {server} is down ({'; '.join(snapshot.down)}): nothing was changed"
        )
    writer = ServerWriter(conn, server, "flexlm", mapping)
    at = snapshot.at
    result = SnapshotResult(at=clock.to_utc(at), counts=writer.counts)
    issued: dict[int, int] = {}
    for feature, status in snapshot.features.items():
        pool_id = writer.pool_id(feature)
        result.features += 1
        if status.issued is not None:  # features mapped to one pool add up
            issued[pool_id] = issued.get(pool_id, 0) + status.issued
        if status.in_use is not None:
            listed_in_use = snapshot.listed_in_use(feature)
            if listed_in_use != status.in_use:
                result.mismatched[feature] = (status.in_use, listed_in_use)
    pools = {p.id: p for p in read_catalog(conn).pools}
    for pool_id, seats in issued.items():
        pool = pools[pool_id]
        if pool.seats != seats:
            ensure_pool(
                conn,
                pool.product,
                pool.license_type,
                {"seats": seats},
                origin=f"lmstat {server}",
                at=at,
            )
            result.seats_changed += 1
    listed = {_key(c): c for c in snapshot.checkouts}
    open_now = {
        (c.feature, c.user, c.host, c.display, c.handle or ""): c for c in writer.open_checkouts()
    }
    for key in sorted(set(listed) - set(open_now), key=lambda k: (listed[k].start, k)):
        c = listed[key]
        writer.checkout(
            c.start,
            c.feature,
            c.user,
            c.host,
            c.licenses,
            display=c.display,
            handle=c.handle,
            version=c.version,
        )
    for key in set(open_now) - set(listed):
        writer.end_checkout(open_now[key], at, CHECKED_IN)
    for waiting in snapshot.queued:
        detail = f"lmstat: queued, handle {waiting.handle}"
        seen = conn.execute(
            sa.select(sa.literal(1)).where(
                queued_t.c.server_id == writer.server_id,
                queued_t.c.feature == waiting.feature,
                queued_t.c.user_name == waiting.user,
                queued_t.c.detail == detail,
            )
        ).first()
        if seen is None:  # the same queued request in the next snapshot is not a new one
            writer.queued(at, waiting.feature, waiting.user, waiting.host, waiting.licenses, detail)
    writer.flush()
    _reconcile_reservations(conn, writer, snapshot, result)
    return result


def _reconcile_reservations(
    conn: Connection, writer: ServerWriter, snapshot: Snapshot, result: SnapshotResult
) -> None:
    r = reservations_t
    current = {
        (row.feature, row.holder_kind, row.holder): row
        for row in conn.execute(
            sa.select(r).where(r.c.server_id == writer.server_id, r.c.seen_until.is_(None))
        )
    }
    for key, row in current.items():
        listed = snapshot.reservations.get(key)
        if listed is None or listed.licenses != row.licenses:
            conn.execute(sa.update(r).where(r.c.id == row.id).values(seen_until=snapshot.at))
            result.reservations_ended += 1
    for key, reserved in snapshot.reservations.items():
        seen = current.get(key)
        if seen is not None and seen.licenses == reserved.licenses:
            continue
        conn.execute(
            sa.insert(r).values(
                server_id=writer.server_id,
                pool_id=writer.pool_id(reserved.feature),
                feature=reserved.feature,
                holder_kind=reserved.holder_kind,
                holder=reserved.holder,
                licenses=reserved.licenses,
                seen_from=snapshot.at,
            )
        )
        result.reservations_started += 1


def read_text(path: str) -> str:
    """The text of the file at `path` (:class:`InvalidInput` when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None
    if b"\x00" in data:
        raise InvalidInput(f"{path} is not lmstat -a output (it is binary)")
    return data.decode("utf-8", "replace")


@store_operation
def import_lmstat(
    engine: Engine,
    text: str,
    *,
    server: str,
    source: str = "lmstat output",
    at: datetime | None = None,
    timezone: str | None = None,
    mapping: FeatureMap | None = None,
) -> SnapshotResult:
    """Parse and apply one ``lmstat -a`` snapshot of `server` (one transaction).

    Raises :class:`InvalidInput` for text that is not such an output and :class:`ServerDown`
    when it reports a server or vendor daemon down; in both cases nothing changes.
    """
    snapshot = parse(text, source=source, at=at, tz=zone(timezone))
    if snapshot.down:
        raise ServerDown(
            f"server {server} is down ({'; '.join(snapshot.down)}): nothing was changed"
        )
    with write(engine) as conn:
        return reconcile(conn, snapshot, server=server, mapping=mapping)
