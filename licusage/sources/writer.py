"""Apply what a license server reported to the store, inside the caller's write transaction.

:class:`ServerWriter` keeps the server's open sessions, checkouts and holds in memory (loaded
from the store at the start, so an import that continues a log picks up where the last one
stopped), applies events in time order, and writes in batches (:meth:`ServerWriter.flush`):
bounded memory for logs of any length, a few statements per batch instead of several per line.
A batch's new sessions are inserted together, their ids coming back in one statement, before
the holds and checkouts that name them; a session that starts and ends within one batch is
inserted ended, its holds released. Sessions written by an earlier batch end through
:func:`licusage.sessions.end_sessions_at`, each at the time the server reported, a batch of
ends in a few statements.

The rules:

* a checkout of ``user@host`` starts a session when none of theirs is open on the server;
* the session holds each product it has checkouts of, with the sum of their licenses; when
  that count changes, the hold is released and a new one starts at the same moment;
* the last check-in ends the session (its reason: ``checked_in``, ``idle_timeout``,
  ``server_restart``, ``removed``);
* a check-in without a matching checkout (the log began while it was out) changes nothing and
  is counted in :attr:`Counts.unmatched`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import clock, rollup
from ..catalog import MAX_NAME_LENGTH, RESERVED_COLUMNS, ensure_pool, read_catalog
from ..db import insert_rows, update_rows
from ..errors import InvalidInput
from ..models import (
    APP_SOURCE,
    checkouts_t,
    denials_t,
    holds_t,
    queued_t,
    servers_t,
    sessions_t,
)
from ..sessions import end_sessions_at
from ..validation import check_host, check_user, identity_of
from .mapping import FeatureMap

# end reasons of server sessions and checkouts
CHECKED_IN = "checked_in"
IDLE_TIMEOUT = "idle_timeout"
SERVER_RESTART = "server_restart"
REMOVED = "removed"  # by the server's administrator (lmremove, rlmremove)

SERVER_KINDS = ("flexlm", "rlm")

FLUSH_EVERY = 5_000  # events between two writes

# the columns a batch writes, in the order of the rows' values
SESSION_COLUMNS = (
    "user_name",
    "user_key",
    "host",
    "display",
    "started_at",
    "last_activity",
    "ended_at",
    "end_reason",
    "ended_by",
    "source",
    "server_id",
)
HOLD_COLUMNS = (
    "session_id",
    "product_id",
    "license_type_id",
    "pool_id",
    "user_name",
    "granted_at",
    "released_at",
    "licenses",
)
CHECKOUT_COLUMNS = (
    "server_id",
    "session_id",
    "product_id",
    "feature",
    "user_name",
    "host",
    "display",
    "handle",
    "version",
    "licenses",
    "out_at",
    "in_at",
    "end_reason",
)


def check_server_name(name: object) -> str:
    """`name` if it can name a license server (it becomes the sessions' source)."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise InvalidInput(f"the server name must be a non-empty string, not {name!r}")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the server name is at most {MAX_NAME_LENGTH} characters long")
    if name == APP_SOURCE:
        raise InvalidInput(
            f"{APP_SOURCE!r} is the source of the app's own sessions: name the server"
        )
    return name


def ensure_server(conn: Connection, name: str, kind: str) -> int:
    """The id of the license server `name` of `kind`, created when new."""
    row = conn.execute(
        sa.select(servers_t.c.id, servers_t.c.kind).where(servers_t.c.name == name)
    ).first()
    if row is not None:
        if row.kind != kind:
            raise InvalidInput(f"server {name!r} is a {row.kind} server, not {kind}")
        return int(row.id)
    return int(
        conn.execute(
            sa.insert(servers_t)
            .values(name=name, kind=kind, created_at=clock.current_db_time())
            .returning(servers_t.c.id)
        ).scalar_one()
    )


@dataclass
class Counts:
    """What one import did."""

    checkouts: int = 0
    checkins: int = 0
    denials: int = 0
    queued: int = 0
    restarts: int = 0
    sessions_started: int = 0
    sessions_ended: int = 0
    unmatched: int = 0  # check-ins of checkouts the store never saw go out


@dataclass
class _Pool:
    product_id: int
    license_type_id: int
    pool_id: int


@dataclass(eq=False)
class _Session:
    id: int | None  # None until written (the batch's flush inserts it)
    user: str
    host: str | None
    last_activity: datetime
    identity: str = ""  # of `user` (see licusage.validation.identity_of)
    started_at: datetime | None = None  # of a session not written yet
    display: str | None = None
    ended_at: datetime | None = None  # a session not written yet that ended in its batch
    end_reason: str | None = None
    checkouts: list[_Checkout] = field(default_factory=list)
    holds: dict[int, _Hold] = field(default_factory=dict)  # product id -> open hold


@dataclass(eq=False)
class _Hold:
    session: _Session
    pool: _Pool
    user: str
    licenses: int
    granted_at: datetime
    id: int | None = None  # set once written
    released_at: datetime | None = None


@dataclass(eq=False)
class _Checkout:
    session: _Session
    feature: str
    pool: _Pool
    user: str
    host: str | None
    display: str | None
    handle: str | None
    version: str | None
    licenses: int
    out_at: datetime
    id: int | None = None
    in_at: datetime | None = None
    end_reason: str | None = None


class ServerWriter:
    """Events of one license server, applied to the store on `conn` (see the module doc)."""

    def __init__(
        self, conn: Connection, server: str, kind: str, mapping: FeatureMap | None = None
    ) -> None:
        self.conn = conn
        self.server = check_server_name(server)
        self.server_id = ensure_server(conn, self.server, kind)
        self.mapping = mapping or FeatureMap()
        self.counts = Counts()
        self._pools: dict[str, _Pool] = {}
        self._sessions: dict[tuple[str, str | None], _Session] = {}
        self._new_sessions: list[_Session] = []  # started since the last flush, not written
        # checked spellings: (user as read) -> (display spelling, identity); host -> host
        self._users: dict[object, tuple[str, str]] = {}
        self._hosts: dict[object, str | None] = {}
        self._new_holds: dict[_Hold, None] = {}  # ordered; removal by key, not by a scan
        self._closed_holds: list[_Hold] = []  # written ones released since the last flush
        self._new_checkouts: list[_Checkout] = []
        self._closed_checkouts: list[_Checkout] = []
        self._ends: list[tuple[int, datetime, str]] = []
        self._touched: dict[int, datetime] = {}
        self._denials: list[dict[str, object]] = []
        self._queued: list[dict[str, object]] = []
        self._events = 0
        self._load()

    # --- state -------------------------------------------------------------------------------

    def _load(self) -> None:
        """The server's open sessions, checkouts and holds, as the store has them."""
        s, c, h = sessions_t, checkouts_t, holds_t
        rows = self.conn.execute(
            sa.select(s.c.id, s.c.user_name, s.c.host, s.c.last_activity).where(
                s.c.server_id == self.server_id, s.c.ended_at.is_(None)
            )
        ).all()
        by_id: dict[int, _Session] = {}
        for row in rows:
            identity = identity_of(row.user_name)
            session = _Session(row.id, row.user_name, row.host, _naive(row.last_activity), identity)
            by_id[row.id] = session
            self._sessions[(identity, row.host)] = session
        # checkouts of sessions ended meanwhile (logged out, reaped) end with their session
        ended = sa.select(s.c.ended_at).where(s.c.id == c.c.session_id).scalar_subquery()
        self.conn.execute(
            sa.update(c)
            .where(c.c.server_id == self.server_id, c.c.in_at.is_(None))
            .where(ended.is_not(None))
            .values(in_at=ended, end_reason="session_ended")
        )
        if not by_id:
            return
        pools: dict[int, _Pool] = {}
        for held in self.conn.execute(
            sa.select(
                h.c.id,
                h.c.session_id,
                h.c.product_id,
                h.c.license_type_id,
                h.c.pool_id,
                h.c.user_name,
                h.c.licenses,
                h.c.granted_at,
            )
            .join(s, s.c.id == h.c.session_id)
            .where(s.c.server_id == self.server_id, s.c.ended_at.is_(None))
            .where(h.c.released_at.is_(None))
        ):
            pool = pools.setdefault(
                held.pool_id, _Pool(held.product_id, held.license_type_id, held.pool_id)
            )
            holder = by_id[held.session_id]
            holder.holds[held.product_id] = _Hold(
                holder,
                pool,
                held.user_name,
                held.licenses,
                _naive(held.granted_at),
                held.id,
            )
        for out in self.conn.execute(
            sa.select(c)
            .where(c.c.server_id == self.server_id, c.c.in_at.is_(None))
            .order_by(c.c.id)
        ):
            owner = by_id.get(out.session_id)
            if owner is None:
                continue
            hold = owner.holds.get(out.product_id)
            owner.checkouts.append(
                _Checkout(
                    owner,
                    out.feature,
                    hold.pool if hold else self._pool(out.feature),
                    out.user_name,
                    out.host,
                    out.display,
                    out.handle,
                    out.version,
                    out.licenses,
                    _naive(out.out_at),
                    out.id,
                )
            )

    def _pool(self, feature: str) -> _Pool:
        found = self._pools.get(feature)
        if found is not None:
            return found
        if not feature or len(feature) > MAX_NAME_LENGTH or "\x00" in feature:
            raise InvalidInput(f"unusable feature name {feature!r}")
        target = self.mapping.target(feature)
        if target.product in RESERVED_COLUMNS:
            raise InvalidInput(f"feature {feature!r}: {target.product!r} is a reserved name")
        catalog = read_catalog(self.conn)
        pool = catalog.pool(target.product, target.license_type)
        if pool is None:
            pool_id = ensure_pool(
                self.conn,
                target.product,
                target.license_type,
                {"seats": None, "counting": target.counting},
                origin=f"{self.server} feature {feature}",
            )
            pool = next(p for p in read_catalog(self.conn).pools if p.id == pool_id)
        found = _Pool(pool.product_id, pool.license_type_id, pool.id)
        self._pools[feature] = found
        return found

    def pool_id(self, feature: str) -> int:
        """The id of the pool `feature` counts in (created when new)."""
        return self._pool(feature).pool_id

    def open_checkouts(self) -> list[_Checkout]:
        """Every checkout of the server that is out now."""
        return [c for session in self._sessions.values() for c in session.checkouts]

    # --- events ------------------------------------------------------------------------------

    def checkout(
        self,
        at: datetime,
        feature: str,
        user: str,
        host: str | None,
        licenses: int = 1,
        *,
        display: str | None = None,
        handle: str | None = None,
        version: str | None = None,
    ) -> None:
        """`user`@`host` checked out `licenses` of `feature` at `at` (naive UTC)."""
        user, identity = self._user(user)
        host = self._host(host)
        pool = self._pools.get(feature) or self._pool(feature)
        key = (identity, host)
        session = self._sessions.get(key)
        if session is not None:
            at = max(at, session.last_activity)  # a snapshot's older start: never before
        else:
            session = _Session(None, user, host, at, identity, started_at=at, display=display)
            self._new_sessions.append(session)
            self._sessions[key] = session
            self.counts.sessions_started += 1
        checkout = _Checkout(
            session, feature, pool, user, host, display, handle, version, licenses, at
        )
        session.checkouts.append(checkout)
        self._new_checkouts.append(checkout)
        self._recount(session, pool, at)
        self._touch(session, at)
        self.counts.checkouts += 1
        self._tick()

    def checkin(
        self,
        at: datetime,
        feature: str,
        user: str,
        host: str | None,
        licenses: int | None = None,
        *,
        reason: str = CHECKED_IN,
        handle: str | None = None,
    ) -> bool:
        """`user`@`host` returned a checkout of `feature` (the one with `handle`, else one of
        `licenses` licenses, else the oldest). False when no such checkout is out."""
        session = self._sessions.get((self._user(user)[1], self._host(host)))
        candidates = [c for c in session.checkouts if c.feature == feature] if session else []
        if handle is not None:
            candidates = [c for c in candidates if c.handle == handle]
        if licenses is not None:
            candidates = sorted(candidates, key=lambda c: c.licenses != licenses)
        if session is None or not candidates:
            self.counts.unmatched += 1
            self._tick()
            return False
        self._close(session, candidates[0], at, reason)
        self.counts.checkins += 1
        self._tick()
        return True

    def restart(self, at: datetime) -> None:
        """The server (re)started: every checkout out before is gone."""
        for session in list(self._sessions.values()):
            for checkout in list(session.checkouts):
                self._close(session, checkout, at, SERVER_RESTART)
        self.counts.restarts += 1

    def end_checkout(self, checkout: _Checkout, at: datetime, reason: str) -> None:
        """End one open checkout (a snapshot no longer lists it, or it was removed)."""
        session = self._sessions.get((identity_of(checkout.user), checkout.host))
        if session is not None and checkout in session.checkouts:
            self._close(session, checkout, at, reason)
            self.counts.checkins += 1

    def denial(
        self,
        at: datetime,
        feature: str,
        user: str,
        host: str | None,
        reason: str,
        detail: str | None,
    ) -> None:
        """The server refused `user` a license of `feature` (`detail`: its own words)."""
        pool = self._pool(feature)
        self._denials.append(
            {
                "at": at,
                "user_name": self._user(user)[1],  # as the app's denials: identities
                "host": self._host(host),
                "product_id": pool.product_id,
                "license_type_id": pool.license_type_id,
                "pool_id": pool.pool_id,
                "reason": reason,
                "detail": detail,
                "server_id": self.server_id,
            }
        )
        self.counts.denials += 1
        self._tick()

    def queued(
        self,
        at: datetime,
        feature: str,
        user: str,
        host: str | None,
        licenses: int,
        detail: str | None,
    ) -> None:
        """The server queued a request of `user` for `feature`."""
        pool = self._pool(feature)
        self._queued.append(
            {
                "server_id": self.server_id,
                "at": at,
                "user_name": self._user(user)[0],
                "host": self._host(host),
                "feature": feature,
                "pool_id": pool.pool_id,
                "licenses": licenses,
                "detail": detail,
            }
        )
        self.counts.queued += 1
        self._tick()

    # --- mechanics ---------------------------------------------------------------------------

    def _user(self, user: object) -> tuple[str, str]:
        """The checked spelling of `user` and its identity (each spelling checked once)."""
        known = self._users.get(user)
        if known is None:
            spelling = check_user(user)
            known = self._users[user] = (spelling, identity_of(spelling))
        return known

    def _host(self, host: object) -> str | None:
        """`host` checked (each spelling once)."""
        try:  # not .get(): None is a checked host (none given)
            return self._hosts[host]
        except KeyError:
            checked = self._hosts[host] = check_host(host)
            return checked

    def _touch(self, session: _Session, at: datetime) -> None:
        if at > session.last_activity:
            session.last_activity = at
        if session.id is not None:  # a session not written yet is inserted with it
            self._touched[session.id] = session.last_activity

    def _close(self, session: _Session, checkout: _Checkout, at: datetime, reason: str) -> None:
        session.checkouts.remove(checkout)
        checkout.in_at, checkout.end_reason = at, reason
        if checkout.id is not None:
            self._closed_checkouts.append(checkout)
        self._touch(session, at)
        if session.checkouts:
            self._recount(session, checkout.pool, at)
            return
        # the last check-in: the session ends and releases what it still holds, never before
        # its grant (a hold begun at this very moment and not written yet never was); holds
        # written by an earlier batch are released by end_sessions_at
        for product, hold in list(session.holds.items()):
            if hold.id is None:
                if hold.granted_at == at:
                    del self._new_holds[hold]
                else:
                    hold.released_at = max(at, hold.granted_at)
                del session.holds[product]
        del self._sessions[(session.identity, session.host)]
        if session.id is None:  # inserted ended, never before its start
            assert session.started_at is not None
            session.ended_at, session.end_reason = max(at, session.started_at), reason
        else:
            self._ends.append((session.id, at, reason))
        self.counts.sessions_ended += 1

    def _recount(self, session: _Session, pool: _Pool, at: datetime) -> None:
        """Make the session's hold of `pool`'s product match its checkouts."""
        product = pool.product_id
        licenses = sum(c.licenses for c in session.checkouts if c.pool.product_id == product)
        hold = session.holds.get(product)
        if hold is not None and hold.licenses == licenses:
            return
        if hold is not None:
            if hold.id is None and hold.granted_at == at:  # not written yet, same moment
                if licenses:
                    hold.licenses = licenses
                    return
                del self._new_holds[hold]
                del session.holds[product]
                return
            hold.released_at = at
            if hold.id is not None:
                self._closed_holds.append(hold)
            del session.holds[product]
        if licenses:
            new = _Hold(session, pool, session.identity, licenses, at)
            session.holds[product] = new
            self._new_holds[new] = None

    def _tick(self) -> None:
        self._events += 1
        if self._events % FLUSH_EVERY == 0:
            self.flush()

    def flush(self) -> None:
        """Write everything applied so far (still inside the caller's transaction)."""
        conn = self.conn
        # the roll-up's marks, in this transaction (end_sessions_at marks the ends itself)
        rollup.mark(
            conn,
            [(h.pool.pool_id, h.released_at) for h in self._closed_holds if h.released_at]
            + [(h.pool.pool_id, h.granted_at) for h in self._new_holds]
            + [(row["pool_id"], row["at"]) for row in self._denials],  # type: ignore[misc]
        )
        # releases first: a session's new hold of a product may only be written once its
        # previous one is released (one active hold per session and product)
        update_rows(
            conn, holds_t, ["released_at"], [(h.released_at, h.id) for h in self._closed_holds]
        )
        self._closed_holds = []
        self._insert_sessions()
        self._insert_holds()
        self._insert_checkouts()
        update_rows(
            conn,
            checkouts_t,
            ["in_at", "end_reason"],
            [(c.in_at, c.end_reason, c.id) for c in self._closed_checkouts],
        )
        self._closed_checkouts = []
        update_rows(
            conn, sessions_t, ["last_activity"], [(at, id_) for id_, at in self._touched.items()]
        )
        self._touched = {}
        end_sessions_at(conn, self._ends, actor=self.server)
        self._ends = []
        for table, rows in ((denials_t, self._denials), (queued_t, self._queued)):
            if rows:
                conn.execute(sa.insert(table), rows)
        self._denials, self._queued = [], []

    def _insert_sessions(self) -> None:
        """Insert the batch's new sessions with their new ids (see :func:`_insert_with_ids`)."""
        new, self._new_sessions = self._new_sessions, []
        if not new:
            return
        rows = [self._session_row(s) for s in new]
        ids = _insert_with_ids(self.conn, sessions_t, SESSION_COLUMNS, rows)
        for session, new_id in zip(new, ids, strict=True):
            session.id = new_id

    def _session_row(self, s: _Session) -> tuple[object, ...]:
        """The values of :data:`SESSION_COLUMNS` of `s`."""
        return (
            s.user,
            s.identity,
            s.host,
            s.display,
            s.started_at,
            s.last_activity,
            s.ended_at,
            s.end_reason,
            self.server if s.ended_at is not None else None,
            self.server,
            self.server_id,
        )

    def _insert_holds(self) -> None:
        _insert(
            self.conn,
            holds_t,
            HOLD_COLUMNS,
            list(self._new_holds),
            _hold_row,
            lambda h: h.released_at is None,
        )
        self._new_holds = {}

    def _insert_checkouts(self) -> None:
        _insert(
            self.conn,
            checkouts_t,
            CHECKOUT_COLUMNS,
            self._new_checkouts,
            self._checkout_row,
            lambda c: c.in_at is None,
        )
        self._new_checkouts = []

    def _checkout_row(self, c: _Checkout) -> tuple[object, ...]:
        """The values of :data:`CHECKOUT_COLUMNS` of `c`."""
        return (
            self.server_id,
            c.session.id,
            c.pool.product_id,
            c.feature,
            c.user,
            c.host,
            c.display,
            c.handle,
            c.version,
            c.licenses,
            c.out_at,
            c.in_at,
            c.end_reason,
        )


def _insert(
    conn: Connection,
    table: sa.Table,
    columns: tuple[str, ...],
    items: list[Any],
    row: Callable[[Any], tuple[object, ...]],
    still_open: Callable[[Any], bool],
) -> None:
    """Insert `items` as rows of `table` (`row`: an item's values of `columns`); the ones still
    open get their new ids (to close them later)."""
    pending = [item for item in items if still_open(item)]
    if pending:  # first: see _insert_with_ids
        ids = _insert_with_ids(conn, table, columns, [row(item) for item in pending])
        for item, new_id in zip(pending, ids, strict=True):
            item.id = new_id
    insert_rows(conn, table, columns, [row(item) for item in items if not still_open(item)])


def _insert_with_ids(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple[object, ...]]
) -> list[int]:
    """Insert `rows` (values of `columns`) into `table` with new ids, returned in the order of
    `rows`: the ids are taken in one statement, the rows inserted in one executemany (no
    RETURNING, which SQLite cannot return in the order of the rows).

    PostgreSQL takes the ids from the table's sequence. SQLite takes the ones after the
    largest, as it does itself: the caller's write transaction (``BEGIN IMMEDIATE``, see
    :func:`licusage.db.write`) holds the write lock, so no other connection inserts meanwhile;
    rows inserted into `table` without ids later in this transaction come after them.
    """
    if conn.dialect.name == "postgresql":
        sequence = sa.func.pg_get_serial_sequence(table.name, "id")
        ids = list(
            conn.execute(
                sa.select(sa.func.nextval(sequence)).select_from(
                    sa.func.generate_series(1, len(rows))
                )
            ).scalars()
        )
    else:
        first = (conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
        ids = list(range(first, first + len(rows)))
    ids = [int(i) for i in ids]
    insert_rows(
        conn, table, (*columns, "id"), [(*row, i) for row, i in zip(rows, ids, strict=True)]
    )
    return ids


def _hold_row(h: _Hold) -> tuple[object, ...]:
    """The values of :data:`HOLD_COLUMNS` of `h`."""
    return (
        h.session.id,
        h.pool.product_id,
        h.pool.license_type_id,
        h.pool.pool_id,
        h.user,
        h.granted_at,
        h.released_at,
        h.licenses,
    )


def _naive(value: datetime | str) -> datetime:
    """A stored time (a datetime, or ISO text on SQLite) as naive UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
