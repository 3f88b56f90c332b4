"""A large, realistic store, generated vectorised with numpy and bulk-loaded (for benchmarks).

The catalogue, seat shares, roles and user names are :mod:`licusage.demo`'s. Sessions are sampled
as arrays; the seat rules are then enforced on the arrays:

* a user named on a product's Named User pool holds that pool; nobody else ever does;
* everyone else asks the product's Concurrent User pool. A user's overlapping sessions share one
  seat, so they are merged into one *occupancy interval* per user and pool, and the intervals are
  admitted first come, first served: an interval is admitted when fewer than ``seats`` admitted
  intervals are open at its start. Intervals that start while *all* requested intervals fit are
  admitted without looking further (vectorised); only those starting in an overloaded stretch
  are decided one by one. The sessions of a refused interval record a ``pool_full`` denial for
  that product, and a session refused every license it asked for is not created, as
  :func:`licusage.sessions.login` does.

Rows are written in one transaction: on SQLite with ``executemany`` of tuples, on PostgreSQL with
``COPY``; the tables' secondary indexes are dropped before loading and rebuilt afterwards (safe:
the store holds no sessions yet, and it all happens in the one transaction).
"""

from __future__ import annotations

import heapq
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex
from tqdm import tqdm  # the plain bar: shown only on a terminal (the CLI)

from . import catalog, clock, rollup
from .db import is_sqlite, store_operation
from .demo import DemoSummary, seat_count, user_names
from .errors import InvalidInput
from .migrations import trigram
from .models import assignments_t, audit_t, denials_t, holds_t, sessions_t
from .sessions import IDLE_TIMEOUT, POOL_FULL, USER_LOGOUT, user_key

US = 1_000_000  # the generator's clock ticks in microseconds since the epoch
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR
OPEN = np.iinfo(np.int64).max  # the end of a session that is still open
PRODUCTS = catalog.DEFAULT_PRODUCTS
NAMED_USER, CONCURRENT_USER = catalog.NAMED_USER, catalog.CONCURRENT_USER
REASONS = (USER_LOGOUT, IDLE_TIMEOUT)
CHUNK = 100_000  # rows per executemany / COPY write
MAX_ATTEMPTS = 4
# A large store's own mix, not the demo's: it is sized for its --active count, all of them at
# once, where the demo's customer-service centre has a third of its staff on shift at a time.
CM, RO, AA, EM = PRODUCTS
SEAT_SHARES: dict[tuple[str, str], float] = {
    (CM, NAMED_USER): 0.15,
    (CM, CONCURRENT_USER): 0.55,
    (RO, NAMED_USER): 0.04,
    (RO, CONCURRENT_USER): 0.16,
    (AA, NAMED_USER): 0.10,
    (AA, CONCURRENT_USER): 0.33,
    (EM, CONCURRENT_USER): 0.55,
}
# role -> (share of users, products used)
ROLES: dict[str, tuple[float, tuple[str, ...]]] = {
    "agent": (0.55, (CM, AA, EM)),
    "supervisor": (0.12, (CM, RO)),
    "analyst": (0.13, (RO,)),
    "back_office": (0.20, (CM, EM)),
}
VDI_HOSTS = 40  # samplings tried to reach the requested session counts

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class _Sessions:
    """Candidate sessions as parallel arrays (times in microseconds)."""

    user: IntArray
    host: IntArray  # index into _host_names(users)
    start: IntArray
    last: IntArray
    end: IntArray  # OPEN while active
    reason: IntArray  # index into REASONS; -1 while active
    uses: BoolArray  # (sessions, products): licenses the login asks for


@dataclass
class _Plan:
    """What the seat rules made of the candidates."""

    sessions: _Sessions
    granted: npt.NDArray[np.int8]  # (sessions, products): 0 none, 1 named, 2 concurrent
    denied: BoolArray  # (sessions, products): asked for a concurrent seat and refused


@contextmanager
def _timed(what: str) -> Iterator[None]:
    """Log how long a step took (logger ``licusage.bulk``, level DEBUG)."""
    began = time.perf_counter()
    yield
    log.debug("%s: %.2f s", what, time.perf_counter() - began)


def _check_count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{name} must be a whole number >= {low}, not {value!r}")
    return value


def _role_table() -> tuple[npt.NDArray[np.float64], BoolArray, IntArray]:
    """Role shares, role x product usage, and each role's first product (its fallback)."""
    shares = np.array([share for share, _ in ROLES.values()])
    uses = np.array([[p in products for p in PRODUCTS] for _, products in ROLES.values()])
    first = np.array([PRODUCTS.index(products[0]) for _, products in ROLES.values()])
    return shares / shares.sum(), uses, first


def _named(
    rng: np.random.Generator, role: IntArray, role_uses: BoolArray, seats: dict[str, int]
) -> BoolArray:
    """(users, products): who is assigned to each product's Named User pool."""
    named = np.zeros((len(role), len(PRODUCTS)), dtype=bool)
    for product, count in seats.items():
        column = PRODUCTS.index(product)
        candidates = np.flatnonzero(role_uses[role, column])
        chosen = rng.permutation(candidates)[:count]
        named[chosen, column] = True
    return named


def _sample(
    rng: np.random.Generator,
    history: int,
    active: int,
    weights: npt.NDArray[np.float64],
    now_us: int,
    days: int,
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """user, start, last activity, end and end reason of `history` ended and `active` open
    sessions: working-day logins, a few at weekends; some active sessions left open for days."""
    users = len(weights)
    user = rng.choice(users, size=history + active, p=weights)
    window_start = (now_us - days * DAY) // DAY * DAY  # midnight, `days` ago
    day_index = np.arange(days + 1)
    weekday = (day_index + (window_start // DAY + 3)) % 7  # 1970-01-01 was a Thursday
    day_weight = np.where(weekday >= 5, 0.05, 1.0)
    day = rng.choice(day_index, size=history, p=day_weight / day_weight.sum())
    first_login = rng.random(history) < 0.7
    hour = np.where(
        first_login, rng.normal(8.5, 1.0, history), rng.uniform(9.0, 17.0, history)
    ).clip(0.0, 23.5)
    start = window_start + day * DAY + (hour * HOUR).astype(np.int64)
    length = np.exp(rng.normal(np.log(3 * HOUR), 0.6, history)).clip(5 * MINUTE, 12 * HOUR)
    length = length.astype(np.int64)
    reaped = rng.random(history) < 0.04  # left open, ended by the idle policy 8 h later
    last = np.where(
        reaped, start + (length * rng.uniform(0.2, 1.0, history)).astype(np.int64), start + length
    )
    end = np.where(reaped, last + 8 * HOUR, last)
    late = end > now_us  # would end in the future: move back by whole days
    shift = np.where(late, -(-(end - now_us) // DAY), 0) * DAY
    start, last, end = start - shift, last - shift, end - shift
    reason = reaped.astype(np.int64)

    # active: most logged in today; a quarter left open for up to a month (stale)
    horizon = min(30, days) * DAY
    stale = rng.random(active) < 0.25
    age = np.where(
        stale,
        rng.uniform(10 * HOUR, max(horizon, 11 * HOUR), active),
        rng.uniform(0, 10 * HOUR, active),
    ).astype(np.int64)
    a_start = now_us - age
    recent = now_us - rng.exponential(6 * MINUTE, active).astype(np.int64)
    long_ago = a_start + (age * rng.uniform(0.0, 1.0, active)).astype(np.int64)
    a_last = np.maximum(np.where(stale, long_ago, recent), a_start)
    return (
        user,
        np.concatenate([start, a_start]),
        np.concatenate([last, a_last]),
        np.concatenate([end, np.full(active, OPEN)]),
        np.concatenate([reason, np.full(active, -1)]),
    )


def _candidates(
    rng: np.random.Generator,
    history: int,
    active: int,
    role: IntArray,
    weights: npt.NDArray[np.float64],
    now_us: int,
    days: int,
) -> _Sessions:
    _, role_uses, role_first = _role_table()
    user, start, last, end, reason = _sample(rng, history, active, weights, now_us, days)
    count = len(user)
    uses = role_uses[role[user]] & (rng.random((count, len(PRODUCTS))) < 0.93)
    nothing = ~uses.any(axis=1)
    uses[np.flatnonzero(nothing), role_first[role[user[nothing]]]] = True
    on_vdi = rng.random(count) < 0.15
    host = np.where(on_vdi, len(weights) + rng.integers(0, VDI_HOSTS, count), user)
    return _Sessions(user, host, start, last, end, reason, uses)


def admit(start: IntArray, end: IntArray, user: IntArray, seats: int) -> BoolArray:
    """First come, first served admission to a concurrent pool of `seats` seats.

    `start`/`end` (``OPEN`` for no end) are requests by `user`; one user's overlapping requests
    share a seat and are admitted or refused together. Returns which requests were admitted; at
    no instant do the admitted requests come from more than `seats` distinct users.
    """
    count = len(start)
    if count == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((start, user))
    u, s, e = user[order], start[order], end[order]
    # merge each user's overlapping requests into occupancy intervals ("groups")
    reach = pd.Series(e).groupby(u).cummax().to_numpy()
    new = np.ones(count, dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (s[1:] >= reach[:-1])
    firsts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    g_start = s[firsts]
    g_end = np.maximum.reduceat(e, firsts)
    groups = len(firsts)

    # every interval boundary in time order; at one instant, releases come before grants
    closed = np.flatnonzero(g_end != OPEN)
    times = np.concatenate([g_end[closed], g_start])
    kind = np.concatenate([np.zeros(len(closed), np.int8), np.ones(groups, np.int8)])
    owner = np.concatenate([closed, np.arange(groups)])
    events = np.lexsort((kind, times))
    is_start = kind[events] == 1
    delta = np.where(is_start, 1, -1)
    demand = np.cumsum(delta)  # open intervals if every request were admitted
    start_events = np.flatnonzero(is_start)
    start_owner = owner[events[start_events]]
    fits = np.zeros(groups, dtype=bool)
    fits[start_owner] = demand[start_events] <= seats
    admitted = fits.copy()

    # requests arriving while demand exceeds the seats: decide one by one, in time order
    # (a request that fitted is admitted whatever happens to these: the admitted are a subset)
    if not fits.all():
        sure = fits[owner[events]]
        sure_open = np.cumsum(np.where(sure, delta, 0))  # admitted-for-sure intervals open
        releases: list[int] = []  # ends of the one-by-one admitted intervals still open
        for position in start_events[demand[start_events] > seats]:
            g = int(owner[events[position]])
            at = int(g_start[g])
            while releases and releases[0] <= at:
                heapq.heappop(releases)
            if int(sure_open[position]) + len(releases) < seats:
                admitted[g] = True
                heapq.heappush(releases, int(g_end[g]))  # OPEN: never released
    result = np.empty(count, dtype=bool)
    result[order] = admitted[group]
    return result


def _apply_rules(sessions: _Sessions, named: BoolArray, concurrent_seats: dict[str, int]) -> _Plan:
    count = len(sessions.user)
    granted = np.zeros((count, len(PRODUCTS)), dtype=np.int8)
    denied = np.zeros((count, len(PRODUCTS)), dtype=bool)
    for column, product in enumerate(PRODUCTS):
        asks = sessions.uses[:, column]
        is_named = asks & named[sessions.user, column]
        granted[is_named, column] = 1
        wants_seat = np.flatnonzero(asks & ~is_named)
        ok = admit(
            sessions.start[wants_seat],
            sessions.end[wants_seat],
            sessions.user[wants_seat],
            concurrent_seats[product],
        )
        granted[wants_seat[ok], column] = 2
        denied[wants_seat[~ok], column] = True
    return _Plan(sessions, granted, denied)


def _take(plan: _Plan, keep: BoolArray) -> _Plan:
    s = plan.sessions
    return _Plan(
        _Sessions(
            s.user[keep],
            s.host[keep],
            s.start[keep],
            s.last[keep],
            s.end[keep],
            s.reason[keep],
            s.uses[keep],
        ),
        plan.granted[keep],
        plan.denied[keep],
    )


def _trim(plan: _Plan, history: int, active: int) -> tuple[_Plan, bool]:
    """Keep the candidate logins (in their random order) up to the `history`-th created ended
    session and the `active`-th created open one; False if there were not enough."""
    created: BoolArray = np.asarray((plan.granted > 0).any(axis=1))
    is_active = plan.sessions.end == OPEN
    keep = np.zeros(len(created), dtype=np.bool_)
    enough = True
    for part, wanted in ((~is_active, history), (is_active, active)):
        index = np.flatnonzero(part)
        made = np.cumsum(created[index])
        if wanted and (not len(made) or made[-1] < wanted):
            enough = False
            keep[index] = True
            continue
        cut = int(np.searchsorted(made, wanted)) + 1 if wanted else 0
        keep[index[:cut]] = True
    return _take(plan, keep), enough


def _simulate(
    users: int, active: int, history: int, days: int, seed: int, now_us: int
) -> tuple[_Plan, BoolArray, dict[tuple[str, str], int]]:
    rng = np.random.default_rng(seed)
    shares, role_uses, _ = _role_table()
    role = rng.choice(len(shares), size=users, p=shares)
    weights = rng.lognormal(0.0, 0.5, users)
    weights /= weights.sum()
    seats = {key: seat_count(users, share) for key, share in SEAT_SHARES.items()}
    named = _named(rng, role, role_uses, {p: n for (p, t), n in seats.items() if t == NAMED_USER})
    concurrent = {p: n for (p, t), n in seats.items() if t == CONCURRENT_USER}
    factor_h = factor_a = 1.01  # a few logins are refused
    for _ in range(MAX_ATTEMPTS):
        want_h, want_a = int(history * factor_h) + 16, int(active * factor_a) + 16
        candidates = _candidates(rng, want_h, want_a, role, weights, now_us, days)
        plan = _apply_rules(candidates, named, concurrent)
        trimmed, enough = _trim(plan, history, active)
        if enough:
            return trimmed, named, seats
        created = np.asarray((plan.granted > 0).any(axis=1))
        is_active = plan.sessions.end == OPEN
        factor_h *= 1.05 * want_h / max(int(created[~is_active].sum()), 1)
        factor_a *= 1.05 * want_a / max(int(created[is_active].sum()), 1)
    return trimmed, named, seats


def _host_names(users: int) -> list[str]:
    """Each user's workstation, then the shared virtual desktops."""
    return [f"ws-{i:05d}" for i in range(users)] + [f"vdi-{i:02d}" for i in range(VDI_HOSTS)]


def _timestamps(values: IntArray) -> list[str]:
    """Microseconds as the store's naive-UTC text (SQLAlchemy's SQLite form, PostgreSQL input)."""
    if not len(values):
        return []
    text = np.datetime_as_string(values.astype("datetime64[us]"), unit="us")
    text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")  # "T" -> " ", in place
    return text.tolist()


def _pick(values: Sequence[Any], index: IntArray) -> list[Any]:
    """``values[i]`` for each i, sharing the objects (no new strings)."""
    return list(map(values.__getitem__, index.tolist()))


@dataclass
class _Rows:
    """Column lists of one table, ready for executemany or COPY."""

    table: sa.Table
    columns: list[str]
    values: list[list[Any]]

    def __len__(self) -> int:
        return len(self.values[0]) if self.values else 0


def _rows(
    plan: _Plan,
    names: Sequence[str],
    named: BoolArray,
    cat: catalog.Catalog,
    now_us: int,
    first_id: int,
) -> list[_Rows]:
    """The rows of named assignments, sessions, holds and denials, as column lists."""
    s = plan.sessions
    created = np.flatnonzero((plan.granted > 0).any(axis=1))
    created = created[np.argsort(s.start[created], kind="stable")]  # ids follow login order
    ids = np.arange(first_id, first_id + len(created))
    keys = [user_key(n) for n in names]
    hosts = _host_names(len(names))
    user = s.user[created]
    is_open = s.end[created] == OPEN
    started = _timestamps(s.start[created])
    ended: list[str | None] = [*_timestamps(np.where(is_open, now_us, s.end[created]))]
    reason = np.where(is_open, len(REASONS), s.reason[created])
    user_names_ = _pick(names, user)
    ended_by: list[str | None] = list(user_names_)
    for index in np.flatnonzero(is_open).tolist():
        ended[index] = None
        ended_by[index] = None
    for index in np.flatnonzero(reason == REASONS.index(IDLE_TIMEOUT)).tolist():
        ended_by[index] = "policy"
    sessions = _Rows(
        sessions_t,
        [
            "id",
            "user_name",
            "user_key",
            "host",
            "started_at",
            "last_activity",
            "ended_at",
            "end_reason",
            "ended_by",
        ],
        [
            ids.tolist(),
            user_names_,
            _pick(keys, user),
            _pick(hosts, s.host[created]),
            started,
            _timestamps(s.last[created]),
            ended,
            _pick([*REASONS, None], reason),
            ended_by,
        ],
    )

    hold_parts: list[tuple[IntArray, int, int, int]] = []
    denial_parts: list[tuple[IntArray, int, int, int]] = []
    for column, product in enumerate(PRODUCTS):
        granted = plan.granted[created, column]
        for kind, type_name in ((1, NAMED_USER), (2, CONCURRENT_USER)):
            pool = cat.pool(product, type_name)
            rows = np.flatnonzero(granted == kind)
            if len(rows):
                assert pool is not None
                hold_parts.append((rows, pool.product_id, pool.license_type_id, pool.id))
        pool = cat.pool(product, CONCURRENT_USER)
        refused = np.flatnonzero(plan.denied[:, column])
        if len(refused):
            assert pool is not None
            denial_parts.append((refused, pool.product_id, pool.license_type_id, pool.id))

    def spread(parts: list[tuple[IntArray, int, int, int]], field: int) -> IntArray:
        return np.repeat([p[field] for p in parts], [len(p[0]) for p in parts]).astype(np.int64)

    rows = np.concatenate([part[0] for part in hold_parts] or [np.zeros(0, np.int64)])
    # in session order: the primary key and the time indexes then grow at their end
    product_ids = spread(hold_parts, 1)
    in_order = np.lexsort((product_ids, rows))
    rows, product_ids = rows[in_order], product_ids[in_order]
    holds = _Rows(
        holds_t,
        [
            "session_id",
            "product_id",
            "license_type_id",
            "pool_id",
            "user_name",
            "granted_at",
            "released_at",
        ],
        [
            ids[rows].tolist(),
            product_ids.tolist(),
            spread(hold_parts, 2)[in_order].tolist(),
            spread(hold_parts, 3)[in_order].tolist(),
            _pick(_pick(keys, user), rows),  # holds keep the identity
            _pick(started, rows),
            _pick(ended, rows),
        ],
    )

    refused = np.concatenate([part[0] for part in denial_parts] or [np.zeros(0, np.int64)])
    by_time = np.argsort(s.start[refused], kind="stable")
    refused = refused[by_time]
    denials = _Rows(
        denials_t,
        ["at", "user_name", "host", "product_id", "license_type_id", "pool_id", "reason"],
        [
            _timestamps(s.start[refused]),
            _pick(keys, s.user[refused]),
            _pick(hosts, s.host[refused]),
            spread(denial_parts, 1)[by_time].tolist(),
            spread(denial_parts, 2)[by_time].tolist(),
            spread(denial_parts, 3)[by_time].tolist(),
            [POOL_FULL] * len(refused),
        ],
    )

    assigned_at = _timestamps(np.array([now_us - 400 * DAY]))[0]
    assign_rows: list[list[Any]] = [[], [], []]
    for column, product in enumerate(PRODUCTS):
        pool = cat.pool(product, NAMED_USER)
        if pool is None:
            continue
        members = sorted(_pick(keys, np.flatnonzero(named[:, column])))
        assign_rows[0] += [pool.id] * len(members)
        assign_rows[1] += members
        assign_rows[2] += [assigned_at] * len(members)
    assignments = _Rows(assignments_t, ["pool_id", "user_name", "assigned_at"], assign_rows)

    # every session the idle policy ended has its audit event, as reap_idle writes it
    idle = np.flatnonzero(reason == REASONS.index(IDLE_TIMEOUT))
    product_names = cat.product_names()
    type_names = cat.type_names()
    freed: dict[int, dict[str, str]] = {int(i): {} for i in idle.tolist()}
    for part_rows, product_id, type_id, _pool in hold_parts:
        for index in part_rows[np.isin(part_rows, idle)].tolist():
            freed[index][product_names[product_id]] = type_names[type_id]
    idle_list = idle.tolist()
    audit = _Rows(
        audit_t,
        ["at", "actor", "action", "session_id", "user_name", "reason", "origin", "detail"],
        [
            _pick(ended, idle),
            ["policy"] * len(idle_list),
            ["end_session"] * len(idle_list),
            ids[idle].tolist(),
            _pick(user_names_, idle),
            [IDLE_TIMEOUT] * len(idle_list),
            [None] * len(idle_list),
            [json.dumps({"licenses": freed[i]}, sort_keys=True) for i in idle_list],
        ],
    )
    return [assignments, sessions, holds, denials, audit]


def _chunks(rows: _Rows) -> Iterator[list[tuple[Any, ...]]]:
    for begin in range(0, len(rows), CHUNK):
        yield list(zip(*(column[begin : begin + CHUNK] for column in rows.values), strict=True))


def _index_ddl(engine: Engine, tables: Iterable[sa.Table]) -> tuple[list[str], list[str]]:
    """DROP and CREATE statements of the tables' secondary indexes (as the models declare them)."""
    drops, creates = [], []
    for table in tables:
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            drops.append(f"DROP INDEX IF EXISTS {index.name}")
            creates.append(str(CreateIndex(index).compile(dialect=engine.dialect)))
    return drops, creates


def _load_sqlite(engine: Engine, tables: list[_Rows], step: Callable[[int], object]) -> None:
    drops, creates = _index_ddl(engine, [sessions_t, holds_t, denials_t])
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        # bulk-load settings for this connection only; restored below
        cursor.execute("PRAGMA foreign_keys = OFF")  # rows are consistent by construction
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA cache_size = -262144")  # 256 MiB
        cursor.execute("PRAGMA temp_store = MEMORY")
        # a rollback journal keeps only the few pages of the empty tables, where WAL would
        # write the whole load twice; it needs the only connection, else WAL stays
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if journal == "wal":
            with suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = DELETE")
        cursor.execute("BEGIN IMMEDIATE")
        try:
            if cursor.execute("SELECT count(*) FROM sessions").fetchone()[0]:
                raise InvalidInput(
                    "the store already holds sessions; a large store needs an empty one"
                )
            for statement in (*rollup.INVALIDATE_SQL, *drops):
                cursor.execute(statement)
            for rows in tables:
                marks = ", ".join("?" * len(rows.columns))
                insert = (
                    f"INSERT INTO {rows.table.name} ({', '.join(rows.columns)}) VALUES ({marks})"
                )
                for chunk in _chunks(rows):
                    cursor.executemany(insert, chunk)
                    step(len(chunk))
            for statement in creates:
                cursor.execute(statement)
            cursor.execute("ANALYZE")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA cache_size = -2000")
            cursor.execute("PRAGMA temp_store = DEFAULT")
            if journal == "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()
    finally:
        raw.close()


def _copy_column(values: list[Any]) -> list[str]:
    """A column in COPY's text form (None as ``\\N``); our values need no escaping."""
    if values and all(isinstance(v, str) for v in values):
        return values
    return ["\\N" if v is None else str(v) for v in values]


def _load_postgres(engine: Engine, tables: list[_Rows], step: Callable[[int], object]) -> None:
    drops, creates = _index_ddl(engine, [sessions_t, holds_t, denials_t])
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        try:
            with dbapi.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                # one long load: no statement or lock time-out (licusage.db.Timeouts) inside it
                cursor.execute("SET LOCAL statement_timeout = 0")
                cursor.execute("SET LOCAL lock_timeout = 0")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                cursor.execute("LOCK TABLE sessions, session_licenses, denials IN EXCLUSIVE MODE")
                cursor.execute("SELECT count(*) FROM sessions")
                row = cursor.fetchone()
                if row is not None and row[0]:
                    raise InvalidInput(
                        "the store already holds sessions; a large store needs an empty one"
                    )
                # foreign keys are checked row by row during COPY: check them once at the end
                cursor.execute(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                    " FROM pg_constraint WHERE contype = 'f'"
                    " AND conrelid IN ('session_licenses'::regclass, 'denials'::regclass)"
                )
                foreign_keys = cursor.fetchall()
                for table, name, _ in foreign_keys:
                    cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                # the trigram index (not in the models; migration 0002): rebuilt if it was there
                cursor.execute("SELECT pg_get_indexdef(to_regclass(%s))", (trigram.INDEX_NAME,))
                row = cursor.fetchone()
                if row is not None and row[0]:
                    drops.append(trigram.DROP_INDEX)
                    creates.append(row[0])
                for statement in (*rollup.INVALIDATE_SQL, *drops):
                    cursor.execute(statement)
                for rows in tables:
                    with _timed(f"COPY {rows.table.name}"):
                        _copy(cursor, rows, step)
                for statement in creates:
                    with _timed(statement):
                        cursor.execute(statement)
                for table, name, definition in foreign_keys:
                    with _timed(f"foreign key {name}"):
                        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                for table in ("sessions", "denials"):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce(max(id), 0) + 1, false) FROM {table}"
                    )
                with _timed("ANALYZE"):
                    cursor.execute("ANALYZE")
            with _timed("COMMIT"):
                dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise
        # set the visibility map, so index-only scans need not visit the heap
        dbapi.autocommit = True
        try:
            with dbapi.cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                row = cursor.fetchone()
                cursor.execute("SET statement_timeout = 0")  # VACUUM of a large table
                for table in ("sessions", "session_licenses", "denials"):
                    with _timed(f"VACUUM {table}"):
                        cursor.execute(f"VACUUM {table}")
                if row is not None:  # the connection's own limit again (licusage.db.Timeouts)
                    cursor.execute("SELECT set_config('statement_timeout', %s, false)", (row[0],))
        finally:
            dbapi.autocommit = False
    finally:
        raw.close()


def _copy(cursor: Any, rows: _Rows, step: Callable[[int], object]) -> None:
    """COPY `rows` into their table, in text form, a chunk at a time."""
    copy_sql = f"COPY {rows.table.name} ({', '.join(rows.columns)}) FROM STDIN"
    text = [_copy_column(column) for column in rows.values]
    with cursor.copy(copy_sql) as copy:
        for begin in range(0, len(rows), CHUNK):
            lines = zip(*(column[begin : begin + CHUNK] for column in text), strict=True)
            copy.write("".join("\t".join(line) + "\n" for line in lines))
            step(min(CHUNK, len(rows) - begin))


@store_operation
def generate_large(
    engine: Engine,
    users: int = 20_000,
    active: int = 100_000,
    history: int = 2_000_000,
    days: int = 365,
    seed: int = 0,
    now: datetime | None = None,
    progress: bool = False,
) -> DemoSummary:
    """Fill a store without sessions with `active` open and `history` ended sessions of `users`
    users over `days` days up to `now`, in the demo catalogue, following the seat rules.

    Deterministic for the same arguments. Fewer sessions than asked are made only when the
    pools refuse too many logins (each refusal is a recorded denial). Raises
    :class:`~licusage.errors.InvalidInput` for bad counts or a store that holds sessions.
    """
    _check_count("users", users, 1)
    _check_count("active", active, 0)
    _check_count("history", history, 0)
    _check_count("days", days, 1)
    _check_count("seed", seed, 0)
    when = clock.to_db(now or clock.now())
    assert when is not None
    now_us = int((when - datetime(1970, 1, 1)) // timedelta(microseconds=1))
    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one():
            raise InvalidInput("the store already holds sessions; a large store needs an empty one")

    with tqdm(total=4, desc="generating", unit="step", disable=not progress, leave=False) as bar:
        plan, named, seats = _simulate(users, active, history, days, seed, now_us)
        bar.update(3)
        for (product, license_type), count in seats.items():
            catalog.add_pool(engine, product, license_type, count)
        cat = catalog.read_catalog(engine)
        with engine.connect() as conn:
            first_id = (conn.execute(sa.select(sa.func.max(sessions_t.c.id))).scalar() or 0) + 1
        tables = _rows(plan, user_names(users), named, cat, now_us, first_id)
        bar.update(1)

    total = sum(len(rows) for rows in tables)
    with tqdm(total=total, desc="writing", unit="row", disable=not progress, leave=False) as bar:
        load = _load_sqlite if is_sqlite(engine) else _load_postgres
        load(engine, tables, bar.update)
    sessions_rows = tables[1]
    return DemoSummary(
        users=users,
        sessions=len(sessions_rows),
        active_sessions=sessions_rows.values[6].count(None),
        holds=len(tables[2]),
        denials=len(tables[3]),
        pools=len(seats),
        now=when,
    )
