"""License server status snapshots (``lmstat -a``, ``rlmstat -a``), reconciled into the store.

A parser (:mod:`.lmstat`, :mod:`.rlmstat`) reads a server's status output into a
:class:`Snapshot`: the checkouts out now, the seats and printed use of each feature, the
reservations and queued requests, and what is down. :func:`reconcile` applies it, the same way
for every kind of server:

* a checkout listed and not yet in the store becomes part of its ``user@host``'s session
  (started at the listed start time);
* one in the store and no longer listed ends at the snapshot's time (reason ``checked_in``);
  a snapshot that lists nothing ends every open session of the server and deletes none;
* the seats of each feature are those the server prints (kept in the seat history); seats
  issued after the expiry a license file gave the pool (``lmstat -i``) clear that expiry, and
  say so: the file was renewed;
* reservations are kept as in use while listed; a queued request is kept once;
* the same snapshot twice changes nothing;
* a snapshot in which the server (or a vendor daemon, or an ISV server) is down changes nothing
  at all: it is reported (:class:`ServerDown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Required, TypedDict
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import clock, rollup
from ..catalog import outlive_expiries, record_seats, refresh_pool_seats
from ..db import store_operation, write
from ..errors import InvalidInput, LicusageError
from ..models import queued_t, reservations_t
from .mapping import FeatureMap
from .writer import CHECKED_IN, Counts, ServerWriter


class ServerDown(LicusageError):
    """The snapshot says a license server or vendor daemon is down: nothing was changed."""


@dataclass(frozen=True)
class Listed:
    """One checkout a snapshot lists."""

    feature: str
    user: str
    host: str | None
    display: str | None
    version: str
    handle: str  # for the removal command: "server/port id" (RLM: "isv server/port id")
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
    """A request a snapshot lists as queued."""

    feature: str
    user: str
    host: str | None
    handle: str
    licenses: int


@dataclass
class FeatureStatus:
    issued: int | None = None  # None: uncounted, or the server said nothing
    in_use: int | None = None  # as the server printed it


@dataclass
class Snapshot:
    """A parsed status output: what is out at `at` on a server of `kind`, read by `tool`."""

    at: datetime  # naive UTC
    kind: str = "flexlm"
    tool: str = "lmstat"
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
    # features still issued after the expiry a license file gave their pool (cleared then):
    # feature -> that expiry (naive UTC)
    outlived: dict[str, datetime] = field(default_factory=dict)


def reconcile(
    conn: Connection, snapshot: Snapshot, *, server: str, mapping: FeatureMap | None = None
) -> SnapshotResult:
    """Apply `snapshot` of `server` inside the caller's transaction (see the module doc)."""
    _check_up(snapshot, server)
    writer = ServerWriter(conn, server, snapshot.kind, mapping)
    at = snapshot.at
    result = SnapshotResult(at=clock.to_utc(at), counts=writer.counts)
    issued: dict[int, int] = {}
    features_of: dict[int, list[str]] = {}
    for feature, status in snapshot.features.items():
        pool_id = writer.pool_id(feature)
        result.features += 1
        if status.issued is not None:  # features mapped to one pool add up
            issued[pool_id] = issued.get(pool_id, 0) + status.issued
            features_of.setdefault(pool_id, []).append(feature)
        if status.in_use is not None:
            listed_in_use = snapshot.listed_in_use(feature)
            if listed_in_use != status.in_use:
                result.mismatched[feature] = (status.in_use, listed_in_use)
    # a snapshot stamped ahead of our clock (the server's clock or time zone off) was read by
    # now: its seats are in force from now, not only once our clock reaches its stamp
    counted_at = min(at, clock.current_db_time())
    for pool_id, seats in issued.items():
        if record_seats(conn, pool_id, seats, at=counted_at, origin=f"{snapshot.tool} {server}"):
            refresh_pool_seats(conn, pool_id)
            result.seats_changed += 1
    granted = [pool_id for pool_id, seats in issued.items() if seats]
    for pool_id, expiry in outlive_expiries(conn, granted, at).items():
        result.outlived.update(dict.fromkeys(features_of[pool_id], expiry))
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
        detail = f"{snapshot.tool}: queued, handle {waiting.handle}"
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
    at = clock.current_db_time(snapshot.at)
    changed: list[tuple[int | None, datetime]] = []  # the roll-up's marks: in use changed
    for key, row in current.items():
        listed = snapshot.reservations.get(key)
        if listed is None or listed.licenses != row.licenses:
            conn.execute(sa.update(r).where(r.c.id == row.id).values(seen_until=snapshot.at))
            changed.append((row.pool_id, at))
            result.reservations_ended += 1
    for key, reserved in snapshot.reservations.items():
        seen = current.get(key)
        if seen is not None and seen.licenses == reserved.licenses:
            continue
        pool_id = writer.pool_id(reserved.feature)
        changed.append((pool_id, at))
        conn.execute(
            sa.insert(r).values(
                server_id=writer.server_id,
                pool_id=pool_id,
                feature=reserved.feature,
                holder_kind=reserved.holder_kind,
                holder=reserved.holder,
                licenses=reserved.licenses,
                seen_from=snapshot.at,
            )
        )
        result.reservations_started += 1
    rollup.mark(conn, changed)


def read_text(path: str, what: str = "lmstat -a output") -> str:
    """The text of the file at `path` (:class:`InvalidInput` when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None
    if b"\x00" in data:
        raise InvalidInput(f"{path} is not {what} (it is binary)")
    return data.decode("utf-8", "replace")


def _check_up(snapshot: Snapshot, server: str) -> None:
    if snapshot.down:
        raise ServerDown(
            f"server {server} is down ({'; '.join(snapshot.down)}): nothing was changed"
        )


@store_operation
def apply_snapshot(
    engine: Engine, snapshot: Snapshot, *, server: str, mapping: FeatureMap | None = None
) -> SnapshotResult:
    """Reconcile the store with `snapshot` of `server` in one transaction (:class:`ServerDown`,
    nothing changed, when it reports something down)."""
    _check_up(snapshot, server)
    with write(engine) as conn:
        return reconcile(conn, snapshot, server=server, mapping=mapping)


class SnapshotOptions(TypedDict, total=False):
    """The keyword arguments of every status-snapshot import besides `source`
    (``import_lmstat(engine, text, server="lic1")``): `at` (aware, or naive UTC) overrides the
    snapshot's own time, `timezone` is the server's, `mapping` maps features to products."""

    server: Required[str]
    at: datetime | None
    timezone: str | None
    mapping: FeatureMap | None


class SnapshotParser(Protocol):
    """A status command's parser (``lmstat.parse``, ``rlmstat.parse``)."""

    def __call__(
        self, text: str, *, source: str, at: datetime | None = None, tz: ZoneInfo | None = None
    ) -> Snapshot: ...


def import_snapshot(
    engine: Engine,
    parse: SnapshotParser,
    text: str,
    *,
    source: str,
    server: str,
    at: datetime | None = None,
    timezone: str | None = None,
    mapping: FeatureMap | None = None,
) -> SnapshotResult:
    """Parse `text` (named `source` in errors) with `parse` in the server's `timezone` and
    apply the snapshot (:func:`apply_snapshot`): the one body of every snapshot import."""
    snapshot = parse(text, source=source, at=at, tz=clock.zone(timezone))
    return apply_snapshot(engine, snapshot, server=server, mapping=mapping)
