"""FlexLM ``lmutil lmstat -i``: the seats a license file grants, for servers known only by a log.

A debug log says who checked out what, never how many licenses there are; ``lmstat -i`` lists
the license file's increments::

    Feature                         Version     #licenses    Expires      Vendor
    _______                         _________   _________    __________   ______
    feature12                       2018.12      50          31-dec-2018  vendor2
    feature12                       2018.12      2           30-sep-2018  vendor2
    feature15                       2018.09      2           1-jan-0      vendor2

The seats of a feature on a day are the licenses of its increments that have not expired by
then (an increment is valid through its expiry date; a year 0 or ``permanent`` never
expires); features mapped to one product add up. :func:`import_lmstat_i` records them in the
seat history from `at` on, so the analytics of a log imported before use them. Increments
counted ``uncounted`` (or 0) leave their feature's seats as they are.

A pool expires when the last of its increments does (at the end of that day), and never when one
of them is permanent: the ``expires_at`` that ``licusage pools``, the ``pool_expiry`` alerts, the
metrics and the dashboard's gauges show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from .. import clock
from ..catalog import forget_seats, record_seats, refresh_pool_seats, set_pool_expiry
from ..db import store_operation, write
from ..errors import InvalidInput
from .mapping import FeatureMap
from .writer import ServerWriter

__all__ = ["Increment", "SeatsResult", "import_lmstat_i", "looks_like", "parse", "seats_on"]

WHAT = "lmstat -i output"
HEADER = re.compile(r"^\s*Feature\s+Version\s+#licenses\s+Expires\s+Vendor\s*$")
ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\d+|uncounted)\s+(\S+)\s+(\S+)\s*$", re.IGNORECASE)
EXPIRES = re.compile(r"^(\d{1,2})-([a-z]{3})-(\d{1,4})$", re.IGNORECASE)
ONE_DAY = timedelta(days=1)
MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}


@dataclass(frozen=True)
class Increment:
    """One line of the license file as ``lmstat -i`` lists it."""

    feature: str
    version: str
    licenses: int | None  # None: uncounted
    expires: date | None  # None: permanent
    vendor: str


@dataclass
class SeatsResult:
    """What an ``lmstat -i`` import recorded."""

    at: datetime
    features: int = 0
    seats_changed: int = 0
    expired: list[str] = field(default_factory=list)  # features none of whose increments hold
    uncounted: list[str] = field(default_factory=list)
    # the moments after `at` the file's seats drop (an expiry day's end) and the features then
    drops: list[tuple[datetime, list[str]]] = field(default_factory=list)
    expiries_changed: int = 0  # pools whose expiry this listing set or moved


def _expiry(text: str) -> date | None:
    if text.lower() == "permanent":
        return None
    found = EXPIRES.match(text)
    if found is None or found.group(2).lower() not in MONTHS:
        raise ValueError(text)
    day, month, year = int(found.group(1)), MONTHS[found.group(2).lower()], int(found.group(3))
    if year == 0:
        return None
    return date(year, month, day)  # ValueError for an impossible date


def looks_like(text: str) -> bool:
    """Whether `text` is an ``lmstat -i`` listing (it has the listing's heading)."""
    return any(HEADER.match(line) for line in text.splitlines())


def parse(text: str, *, source: str) -> list[Increment]:
    """The increments ``lmstat -i`` output `text` lists (`source` names it in errors).

    Raises :class:`InvalidInput` for text that is not such an output or a malformed row.
    """
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if HEADER.match(line)), None)
    if start is None:
        raise InvalidInput(
            f"{source} is not {WHAT} (no 'Feature Version #licenses Expires Vendor' heading)"
        )
    increments = []
    for number, line in enumerate(lines[start + 1 :], start=start + 2):
        if not line.strip() or set(line.strip()) <= {"_", " "}:
            continue
        row = ROW.match(line)
        if row is None:
            raise InvalidInput(f"{source}, line {number}: not a feature line: {line.strip()!r}")
        feature, version, count, expires, vendor = row.groups()
        try:
            expiry = _expiry(expires)
        except ValueError:
            raise InvalidInput(
                f"{source}, line {number}: expiry date {expires!r} is not like 31-dec-2026"
            ) from None
        licenses = None if count.lower() == "uncounted" or count == "0" else int(count)
        increments.append(Increment(feature, version, licenses, expiry, vendor))
    if not increments:
        raise InvalidInput(f"{source} is not {WHAT} (it lists no features)")
    return increments


def seats_on(increments: list[Increment], day: date) -> dict[str, int | None]:
    """Each feature's seats on `day`: the licenses of its increments not expired by then (None:
    the feature has an uncounted increment)."""
    seats: dict[str, int] = {}
    uncounted = set()
    for inc in increments:
        seats.setdefault(inc.feature, 0)
        if inc.licenses is None:
            uncounted.add(inc.feature)
        elif inc.expires is None or inc.expires >= day:
            seats[inc.feature] += inc.licenses
    return {feature: None if feature in uncounted else n for feature, n in seats.items()}


@store_operation
def import_lmstat_i(
    engine: Engine,
    text: str,
    *,
    server: str,
    source: str = WHAT,
    at: datetime | None = None,
    timezone: str | None = None,
    mapping: FeatureMap | None = None,
) -> SeatsResult:
    """Record the seats ``lmstat -i`` output `text` of `server` grants from `at` on (aware, or
    naive UTC; default now), and their drops as its increments expire, in one transaction.

    The license file's days are in the server's `timezone`; an increment counts through its
    expiry day. The drops this server's previous ``lmstat -i`` foresaw after `at` are replaced
    by this file's (a renewed file supersedes them). Raises :class:`InvalidInput` for text that
    is not such an output; then nothing changes.
    """
    increments = parse(text, source=source)
    tz = clock.zone(timezone)
    when = clock.current_db_time(at)
    day = clock.to_utc(when).astimezone(tz).date()
    seats = seats_on(increments, day)
    result = SeatsResult(at=clock.to_utc(when), features=len(seats))
    result.expired = sorted(feature for feature, count in seats.items() if count == 0)
    result.uncounted = sorted(feature for feature, count in seats.items() if count is None)
    # the file's seats from `when`, then from the day after each expiry still to come
    ends = sorted({i.expires for i in increments if i.expires is not None and i.expires >= day})
    changes = [(when, day)] + [(_midnight_after(end, tz), end + ONE_DAY) for end in ends]
    origin, foreseen = f"lmstat -i {server}", f"lmstat -i {server}: expiry"
    with write(engine) as conn:
        writer = ServerWriter(conn, server, "flexlm", mapping)
        pool_of = {feature: writer.pool_id(feature) for feature in seats}
        pools = sorted(set(pool_of.values()))
        planned: dict[int, list[tuple[datetime, int]]] = {pool_id: [] for pool_id in pools}
        previous = seats
        for moment, on_day in changes:
            counts = seats_on(increments, on_day)
            per_pool: dict[int, int] = {}
            for feature, count in counts.items():
                if count is not None:  # an uncounted feature's seats stay as they are
                    pool_id = pool_of[feature]
                    per_pool[pool_id] = per_pool.get(pool_id, 0) + count
            for pool_id, count in per_pool.items():
                planned[pool_id].append((moment, count))
            if moment != when:
                dropped = sorted(f for f, count in counts.items() if count != previous[f])
                result.drops.append((clock.to_utc(moment), dropped))
            previous = counts
        for pool_id, entries in planned.items():
            changed = forget_seats(conn, pool_id, after=when, origin=foreseen, keep=entries) > 0
            for moment, count in entries:
                kind = origin if moment == when else foreseen
                changed |= record_seats(conn, pool_id, count, at=moment, origin=kind)
            result.seats_changed += changed
            refresh_pool_seats(conn, pool_id)
        for pool_id, expires in _pool_expiries(increments, pool_of, tz).items():
            result.expiries_changed += set_pool_expiry(conn, pool_id, expires)
    return result


def _pool_expiries(
    increments: list[Increment], pool_of: dict[str, int], tz: ZoneInfo
) -> dict[int, datetime | None]:
    """When each pool's licenses expire (naive UTC): the end of the day its last increment
    expires, None when one of them is permanent."""
    days: dict[int, list[date | None]] = {}
    for inc in increments:
        days.setdefault(pool_of[inc.feature], []).append(inc.expires)
    return {
        pool_id: None if None in ends else _midnight_after(max(filter(None, ends)), tz)
        for pool_id, ends in days.items()
    }


def _midnight_after(day: date, tz: ZoneInfo) -> datetime:
    """The naive UTC moment `day` ends in `tz` (the next day's midnight, local)."""
    following = day + ONE_DAY
    local = datetime(following.year, following.month, following.day, tzinfo=tz)
    return clock.current_db_time(local)
