"""What a licensed application calls: log in (taking licenses), touch, end.

Seat rules, checked inside one write transaction that locks the pools concerned:

* **Named** pools grant a license only to users assigned to the pool.
* **Concurrent** pools admit at most ``seats`` distinct users at once; a user who already holds
  the pool in another active session reuses that seat.
* **Counted** (``per_checkout``, floating) pools admit a session while the licenses held in the
  pool stay within ``seats``; each session takes one license.
* A pool whose seats are not known (a license server's feature) does not refuse anyone here.
* A pool past its ``expires_at`` grants nothing.

Every license that cannot be granted is recorded as a denial.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from . import clock, rollup
from .audit import record_audit as record_audit  # the audit writes live in licusage.audit
from .audit import record_session_ends
from .catalog import Catalog, Pool, read_catalog
from .db import is_sqlite, store_operation, write
from .errors import InvalidInput, NotAnAppSession
from .models import (
    APP_SOURCE,
    NAMED,
    PER_CHECKOUT,
    assignments_t,
    denials_t,
    holds_t,
    pools_t,
    sessions_t,
)
from .validation import (
    check_actor,
    check_host,
    check_licenses,
    check_time,
    check_user,
    identity_of,
    lenient_identity,
)

# denial reasons
POOL_FULL = "pool_full"
NOT_NAMED = "not_named"
POOL_EXPIRED = "pool_expired"

# end reasons
USER_LOGOUT = "user_logout"
ADMIN_LOGOUT = "admin_logout"
IDLE_TIMEOUT = "idle_timeout"

MAX_REASON_LENGTH = 50

# the range of the INTEGER id column (PostgreSQL's; the same schema on SQLite)
MIN_SESSION_ID, MAX_SESSION_ID = -(2**31), 2**31 - 1

# SQLite allows 32,766 bound parameters; stay well inside it
ID_CHUNK = 5_000


@dataclass(frozen=True)
class LoginResult:
    """What a login got. `session_id` is None when every requested license was denied."""

    session_id: int | None
    granted: dict[str, str] = field(default_factory=dict)  # product -> license type
    denied: dict[str, str] = field(default_factory=dict)  # product -> denial reason

    @property
    def ok(self) -> bool:
        return not self.denied and self.session_id is not None


def check_reason(reason: object) -> str:
    """`reason` if it is a usable end reason (short text such as ``admin_logout``)."""
    if not isinstance(reason, str) or not reason.strip() or "\x00" in reason:
        raise InvalidInput(f"reason must be a non-empty string, not {reason!r}")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"reason is at most {MAX_REASON_LENGTH} characters long")
    return reason


def check_session_id(value: object) -> int:
    """`value` as a session id: any integer (also NumPy's), never a bool, str or float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInput(f"session ids are integers, not {value!r}")
    number = int(value)
    if not MIN_SESSION_ID <= number <= MAX_SESSION_ID:  # no stored id can be out there
        raise InvalidInput(f"session id {number} is outside the range of stored ids")
    return number


def user_key(user: str) -> str:
    """The identity of a user name (see :mod:`licusage.validation`): what seats are counted by,
    named seats are assigned to and the user filter searches. Lenient: for stored names."""
    return lenient_identity(user)


def _lock_pools(conn: Connection, pool_ids: Sequence[int]) -> dict[int, int | None]:
    """Lock the pools' rows (PostgreSQL) and return their current seats."""
    query = sa.select(pools_t.c.id, pools_t.c.seats).where(pools_t.c.id.in_(sorted(pool_ids)))
    if not is_sqlite(conn):  # SQLite's BEGIN IMMEDIATE already serialises writers
        query = query.order_by(pools_t.c.id).with_for_update()
    return {row.id: row.seats for row in conn.execute(query)}


def write_time(conn: Connection, at: datetime | None = None) -> datetime:
    """The time a write stamps, taken inside the serialised write (pools locked, or SQLite's
    write lock held): `at` when the caller gives one, else now, but never earlier than the
    latest release the store has recorded (a clock that stepped back, or another host's clock,
    cannot make a grant look older than the release that made room for it)."""
    if at is not None:
        return clock.current_db_time(at)
    now = clock.current_db_time()
    latest = conn.execute(
        sa.select(sa.func.max(holds_t.c.released_at)).where(holds_t.c.released_at.is_not(None))
    ).scalar()
    return max(now, latest) if latest is not None else now


def _greatest(conn: Connection, *values: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    return sa.func.max(*values) if is_sqlite(conn) else sa.func.greatest(*values)


def lock_session_pools(conn: Connection, session_ids: list[int]) -> None:
    """On PostgreSQL, lock the pools the given sessions hold licenses of (in id order, as a
    login does), so an end and a login of the same pool are serialised like on SQLite."""
    if is_sqlite(conn):
        return
    pool_ids: set[int] = set()
    for id_in in id_conditions(conn, holds_t.c.session_id, session_ids):
        pool_ids.update(
            conn.execute(
                sa.select(holds_t.c.pool_id)
                .where(id_in, holds_t.c.released_at.is_(None))
                .distinct()
            ).scalars()
        )
    if pool_ids:
        _lock_pools(conn, sorted(pool_ids))


def lock_all_pools(conn: Connection) -> None:
    """On PostgreSQL, lock every pool row (a reap ends sessions of any pool, in several steps:
    taking all the locks first, in id order, cannot deadlock with a login)."""
    if not is_sqlite(conn):
        conn.execute(sa.select(pools_t.c.id).order_by(pools_t.c.id).with_for_update()).all()


def _decide(conn: Connection, pool: Pool, seats: int | None, user: str, at: datetime) -> str | None:
    """None when `user` may take a license of `pool` now, else the denial reason."""
    if pool.expires_at is not None and pool.expires_at <= at:
        return POOL_EXPIRED
    if pool.kind == NAMED:
        named = conn.execute(
            sa.select(sa.literal(1)).where(
                assignments_t.c.pool_id == pool.id, assignments_t.c.user_name == user
            )
        ).first()
        return None if named else NOT_NAMED
    active = holds_t.c.released_at.is_(None)
    if seats is None:
        return None
    if pool.counting == PER_CHECKOUT:
        licenses = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(holds_t.c.licenses), 0)).where(
                holds_t.c.pool_id == pool.id, active
            )
        ).scalar_one()
        return None if licenses + 1 <= seats else POOL_FULL
    holds_seat = conn.execute(
        sa.select(sa.literal(1))
        .where(holds_t.c.pool_id == pool.id, holds_t.c.user_name == user, active)
        .limit(1)
    ).first()
    if holds_seat:
        return None
    in_use = conn.execute(
        sa.select(sa.func.count(sa.distinct(holds_t.c.user_name))).where(
            holds_t.c.pool_id == pool.id, active
        )
    ).scalar_one()
    return None if in_use < seats else POOL_FULL


def _requested_pools(catalog: Catalog, licenses: Mapping[str, str]) -> list[Pool]:
    pools = []
    for product, license_type in licenses.items():
        catalog.type_id(product, license_type)  # raises UnknownProduct / UnknownLicenseType
        pool = catalog.pool(product, license_type)
        assert pool is not None
        pools.append(pool)
    return pools


@store_operation
def login(
    engine: Engine,
    user: str,
    licenses: Mapping[str, str],
    host: str | None = None,
    at: datetime | None = None,
) -> LoginResult:
    """Start a session of `user` asking for `licenses` (product -> license type).

    Grants what the pools allow and records a denial for the rest. A session is created when at
    least one license was granted, or when none was asked for. Seats are counted by the user's
    identity (``Alice`` and ``alice `` are one user); the session keeps the spelling given.
    Every argument is checked first (:mod:`licusage.validation`): a malformed one raises
    :class:`InvalidInput` and records nothing.
    """
    user = check_user(user)
    key = identity_of(user)
    licenses = check_licenses(licenses)
    host = check_host(host)
    at = check_time(at)
    with write(engine) as conn:
        catalog = read_catalog(conn)
        pools = _requested_pools(catalog, licenses)
        seats = _lock_pools(conn, [p.id for p in pools])
        # stamped only now that the pools are ours: a login that waited behind another write
        # is granted after that write's releases, and its history says so
        when = write_time(conn, at)
        granted: list[Pool] = []
        denied: dict[str, str] = {}
        for pool in pools:
            reason = _decide(conn, pool, seats[pool.id], key, when)
            if reason is None:
                granted.append(pool)
            else:
                denied[pool.product] = reason
        if denied:
            conn.execute(
                sa.insert(denials_t),
                [
                    {
                        "at": when,
                        "user_name": key,
                        "host": host,
                        "product_id": pool.product_id,
                        "license_type_id": pool.license_type_id,
                        "pool_id": pool.id,
                        "reason": denied[pool.product],
                    }
                    for pool in pools
                    if pool.product in denied
                ],
            )
        rollup.mark(conn, [(pool.id, when) for pool in pools])  # granted and denied alike
        if pools and not granted:
            return LoginResult(None, {}, denied)
        session_id = conn.execute(
            sa.insert(sessions_t)
            .values(
                user_name=user,
                user_key=key,
                host=host,
                started_at=when,
                last_activity=when,
            )
            .returning(sessions_t.c.id)
        ).scalar_one()
        if granted:
            conn.execute(
                sa.insert(holds_t),
                [
                    {
                        "session_id": session_id,
                        "product_id": pool.product_id,
                        "license_type_id": pool.license_type_id,
                        "pool_id": pool.id,
                        "user_name": key,  # seats count identities
                        "granted_at": when,
                    }
                    for pool in granted
                ],
            )
        return LoginResult(int(session_id), {p.product: p.license_type for p in granted}, denied)


@store_operation
def touch(engine: Engine, session_id: int, at: datetime | None = None) -> bool:
    """Record activity on a session. Returns False when the session has ended or is unknown.

    Raises :class:`NotAnAppSession` for a license server's active session: its activity is the
    server's to report.
    """
    session_id = check_session_id(session_id)
    when = clock.current_db_time(check_time(at))
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(sessions_t)
            .where(
                sessions_t.c.id == session_id,
                sessions_t.c.ended_at.is_(None),
                sessions_t.c.source == APP_SOURCE,
            )
            .values(
                last_activity=sa.func.max(sessions_t.c.last_activity, when)
                if is_sqlite(conn)
                else sa.func.greatest(sessions_t.c.last_activity, when)
            )
        )
        if result.rowcount:
            return True
        source = conn.execute(
            sa.select(sessions_t.c.source).where(
                sessions_t.c.id == session_id, sessions_t.c.ended_at.is_(None)
            )
        ).scalar()
        if source is not None:
            raise _not_an_app_session(session_id, source)
        return False


def _not_an_app_session(session_id: int, source: str) -> NotAnAppSession:
    return NotAnAppSession(
        f"session {session_id} is a checkout on license server {source!r}: it ends when the "
        "server checks it in, or by a logout"
    )


@store_operation
def end(
    engine: Engine,
    session_id: int,
    reason: str = USER_LOGOUT,
    at: datetime | None = None,
    actor: str | None = None,
) -> bool:
    """End a session, releasing its licenses. Returns False if it had already ended.

    `actor` defaults to the session's own user. Raises :class:`InvalidInput` for an unknown id
    and :class:`NotAnAppSession` for a license server's session (a logout ends those).
    """
    session_id = check_session_id(session_id)
    reason = check_reason(reason)
    at = check_time(at)
    if actor is not None:
        actor = check_actor(actor)
    with write(engine) as conn:
        found = conn.execute(
            sa.select(sessions_t.c.user_name, sessions_t.c.source, sessions_t.c.ended_at).where(
                sessions_t.c.id == session_id
            )
        ).first()
        if found is None:
            raise InvalidInput(f"no session with id {session_id}")
        owner, source, ended_at = found
        if source != APP_SOURCE and ended_at is None:
            raise _not_an_app_session(session_id, source)
        ended = end_sessions(
            conn,
            [session_id],
            actor=actor or owner,
            reason=reason,
            at=at,
            audit=reason != USER_LOGOUT,
        )
        return bool(ended)


def end_sessions_at(
    conn: Connection, ends: Sequence[tuple[int, datetime, str]], *, actor: str
) -> None:
    """End each ``(session id, time, reason)`` of `ends` at its own time, inside the caller's
    transaction, releasing its licenses then: a license server's record of check-ins, written
    in a few statements however many there are. Sessions already ended are left as they are;
    nothing is audited (the server's log is the record)."""
    if not ends:
        return
    ids = sorted({session_id for session_id, _, _ in ends})
    end_at = {session_id: clock.current_db_time(at) for session_id, at, _ in ends}
    rows = [
        {"end_id": session_id, "end_at": end_at[session_id], "end_reason": reason}
        for session_id, _, reason in ends
    ]
    released: list[tuple[int, datetime]] = []  # (pool, when) of each license given back
    for id_in in id_conditions(conn, holds_t.c.session_id, ids):
        released += [
            (pool_id, end_at[session_id])
            for session_id, pool_id in conn.execute(
                sa.select(holds_t.c.session_id, holds_t.c.pool_id).where(
                    id_in, holds_t.c.released_at.is_(None)
                )
            )
        ]
    if released and not is_sqlite(conn):  # what lock_session_pools does, from this same read
        _lock_pools(conn, sorted({pool_id for pool_id, _ in released}))
    at = sa.bindparam("end_at", type_=sa.DateTime)
    conn.execute(
        sa.update(sessions_t)
        .where(sessions_t.c.id == sa.bindparam("end_id"), sessions_t.c.ended_at.is_(None))
        .values(_session_end(conn, at, sa.bindparam("end_reason"), actor)),
        rows,
    )
    conn.execute(
        sa.update(holds_t)
        .where(holds_t.c.session_id == sa.bindparam("end_id"), holds_t.c.released_at.is_(None))
        .values(_hold_release(conn, at)),
        rows,
    )
    rollup.mark(conn, released)


def _session_end(
    conn: Connection, at: sa.ColumnElement[datetime], reason: object, actor: str
) -> dict[str, object]:
    """The values that end a session: never before its own start."""
    return {
        "ended_at": _greatest(conn, at, sessions_t.c.started_at),
        "end_reason": reason,
        "ended_by": actor,
    }


def _hold_release(conn: Connection, at: sa.ColumnElement[datetime]) -> dict[str, object]:
    """The values that release a hold: never before its grant."""
    return {"released_at": _greatest(conn, at, holds_t.c.granted_at)}


def id_conditions(
    conn: Connection, column: sa.ColumnElement[int], ids: list[int]
) -> Iterator[sa.ColumnElement[bool]]:
    """Conditions "`column` is one of `ids`", one per statement to run.

    PostgreSQL takes all ids as one array parameter (it plans that at once, where a 5,000-item IN
    list costs seconds of planning and binding); SQLite takes IN lists within its parameter limit.
    """
    if conn.dialect.name == "postgresql":
        if ids:
            yield column == sa.any_(sa.bindparam(None, ids, type_=postgresql.ARRAY(sa.Integer)))
        return
    for start in range(0, len(ids), ID_CHUNK):
        yield column.in_(ids[start : start + ID_CHUNK])


def rows_for_ids(
    conn: Connection, query: sa.Select, column: sa.ColumnElement[int], ids: list[int]
) -> list[sa.Row]:
    """Every row of `query` whose `column` is one of `ids`, one statement per
    :func:`id_conditions` (in `query`'s order within each; `ids` sorted keep it overall)."""
    rows: list[sa.Row] = []
    for id_in in id_conditions(conn, column, ids):
        rows += conn.execute(query.where(id_in)).all()
    return rows


def end_sessions(
    conn: Connection,
    session_ids: Iterable[int],
    *,
    actor: str,
    reason: str,
    at: datetime | None = None,
    origin: str | None = None,
    audit: bool = True,
    condition: sa.ColumnElement[bool] | None = None,
) -> list[int]:
    """End the still-active sessions among `session_ids` inside the caller's transaction.

    Releases their licenses and (with `audit`) writes one audit event per session ended, naming
    the licenses it freed. Returns the ids this call ended; the rest had already ended or do not
    exist (or fail `condition`, checked in the same UPDATE). Never deletes anything.

    The end is stamped after the pools concerned are locked (see :func:`write_time`), and never
    before a session's own start.
    """
    ids = sorted(set(session_ids))
    lock_session_pools(conn, ids)
    when = write_time(conn, at)
    ended: dict[int, str] = {}
    for id_in in id_conditions(conn, sessions_t.c.id, ids):
        rows = conn.execute(
            sa.update(sessions_t)
            .where(id_in, sessions_t.c.ended_at.is_(None))
            .where(condition if condition is not None else sa.true())
            .values(_session_end(conn, sa.literal(when, sa.DateTime), reason, actor))
            .returning(sessions_t.c.id, sessions_t.c.user_name)
        ).all()
        ended.update({row.id: row.user_name for row in rows})
    if not ended:
        return []
    freed: dict[int, dict[str, str]] = {session_id: {} for session_id in ended}
    if audit:
        catalog = read_catalog(conn)
        product_names = catalog.product_names()
        type_names = catalog.type_names()
    ended_ids = sorted(ended)
    for id_in in id_conditions(conn, holds_t.c.session_id, ended_ids):
        released = conn.execute(
            sa.update(holds_t)
            .where(id_in, holds_t.c.released_at.is_(None))
            .values(_hold_release(conn, sa.literal(when, sa.DateTime)))
            .returning(
                holds_t.c.session_id,
                holds_t.c.product_id,
                holds_t.c.license_type_id,
                holds_t.c.pool_id,
            )
        ).all()
        rollup.mark(conn, [(row.pool_id, when) for row in released])
        if audit:
            for row in released:
                freed[row.session_id][product_names[row.product_id]] = type_names[
                    row.license_type_id
                ]
    if audit:
        record_session_ends(conn, ended, freed, at=when, actor=actor, reason=reason, origin=origin)
    return ended_ids
