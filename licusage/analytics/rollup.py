"""The hourly roll-up's read side: bringing it up to date (:func:`refresh`) and reading it
in one snapshot with the holds it does not cover (:func:`snapshot`, :func:`rolled_until`,
:func:`hours`). The write side, marking what writes changed, is :mod:`licusage.rollup`.

A roll-up row is one pool's use in one complete UTC hour ``[hour, hour + 1h)``: ``peak`` (the
exact maximum of in use, counted as everywhere in the analytics), ``seat_seconds`` (the integral
of in use) and ``denials``. Holds still open count to the end of the hour, which is what every
analytics function counts for an hour that ended before now. Hours from now's hour on are never
rolled up: they are read from the holds.

A refresh plans in one read snapshot (every pool from ``min(until, its earliest dirty hour)``,
or from its first hold, denial or creation when it has no roll-up yet, to now's hour), computes
there, and writes the rows in one short write transaction that checks each pool's ``version``
did not move meanwhile (another refresh won: plan again). Writes committed after the snapshot
left their own dirty marks, which this refresh does not delete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm  # the plain bar: shown only on a terminal (the CLI)

from .. import clock
from ..catalog import Catalog, Pool, read_catalog
from ..db import is_sqlite, store_operation, write
from ..errors import StoreUnavailable
from ..models import PER_CHECKOUT, rollup_dirty_t, rollup_hours_t, rollup_pools_t
from ..sessions import id_conditions
from . import intervals, loading
from .intervals import HOUR_NS, Array

log = logging.getLogger(__name__)

# any constant: the PostgreSQL advisory lock that serialises the refreshes' writes
_PG_LOCK_KEY = 0x11C0_0012
ATTEMPTS = 5  # plans of one refresh, when other refreshes keep winning


def pool_steps(holds: pd.DataFrame, pools: tuple[Pool, ...]) -> dict[int, tuple[Array, Array]]:
    """pool id -> in-use step function from loaded holds: distinct users, or for a pool counted
    per checkout the sum of the licenses held (the counting rule of all the analytics)."""
    users = pd.factorize(holds["user"])[0].astype(np.int64)
    licenses = holds["licenses"].to_numpy()
    steps = {}
    for pool in pools:  # a loop per pool; everything per session is vectorised
        mask = (holds["pool_id"] == pool.id).to_numpy()
        s, e = holds["s"].to_numpy()[mask], holds["e"].to_numpy()[mask]
        keep = s < e
        if pool.counting == PER_CHECKOUT:  # every license counts: nothing is shared
            count = licenses[mask][keep]
            steps[pool.id] = intervals.step(np.repeat(s[keep], count), np.repeat(e[keep], count))
            continue
        _, _, _, starts, ends = intervals.merge(users[mask][keep], s[keep], e[keep])
        steps[pool.id] = intervals.step(starts, ends)
    return steps


def _ns(value: datetime | str) -> int:
    return int(pd.Timestamp(value).value)


def _db(ns: int) -> datetime:
    return pd.Timestamp(ns, unit="ns").to_pydatetime()


def _floor_hour(ns: int) -> int:
    return ns - ns % HOUR_NS


def complete_hours_end() -> int:
    """Where the complete hours end now (ns): the start of now's hour."""
    return _floor_hour(loading.instant(clock.now(), "now"))


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction whose reads all see one state of the store (a WAL read transaction
    on SQLite, REPEATABLE READ on PostgreSQL)."""
    options = {} if is_sqlite(engine) else {"isolation_level": "REPEATABLE READ"}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


@dataclass
class _Plan:
    upto: int
    dirty_ids: list[int] = field(default_factory=list)
    versions: dict[int, int | None] = field(default_factory=dict)  # None: no rollup_pools row
    # pool id -> (recompute from, the pool's new until); recompute only when from < until
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    rows: list[dict[str, object]] = field(default_factory=list)
    fresh: set[int] = field(default_factory=set)  # pools rolled up afresh: every old row goes

    @property
    def hours(self) -> int:
        return sum(max(0, (hi - lo) // HOUR_NS) for lo, hi in self.ranges.values())


def _state(conn: Connection) -> dict[int, tuple[int, int]]:
    """pool id -> (until ns, version)."""
    r = rollup_pools_t
    return {
        row.pool_id: (_ns(row.until), row.version)
        for row in conn.execute(sa.select(r.c.pool_id, r.c.until, r.c.version))
    }


def _dirty(conn: Connection) -> list[tuple[int, int, int]]:
    d = rollup_dirty_t
    return [
        (row.id, row.pool_id, _ns(row.hour))
        for row in conn.execute(sa.select(d.c.id, d.c.pool_id, d.c.hour))
    ]


def _plan(conn: Connection, catalog: Catalog, upto: int, rebuild: bool) -> _Plan:
    state = _state(conn)
    dirty = _dirty(conn)
    plan = _Plan(upto, dirty_ids=[d[0] for d in dirty])
    first_dirty: dict[int, int] = {}
    for _, pool_id, hour in dirty:
        first_dirty[pool_id] = min(hour, first_dirty.get(pool_id, hour))
    births = (
        loading.pool_births(conn)
        if rebuild or any(p.id not in state for p in catalog.pools)
        else {}
    )
    for pool in catalog.pools:
        known = state.get(pool.id)
        if rebuild or known is None:
            lo = _floor_hour(births.get(pool.id, upto))
            plan.fresh.add(pool.id)
        else:
            lo = min(known[0], first_dirty.get(pool.id, known[0]))
            if lo == known[0] and lo >= upto and pool.id not in first_dirty:
                continue  # rolled up to now's hour already, nothing changed
        plan.versions[pool.id] = None if known is None else known[1]
        plan.ranges[pool.id] = (lo, upto if lo < upto else lo)
    return plan


def _compute(conn: Connection, pool: Pool, lo: int, hi: int) -> list[dict[str, object]]:
    """The roll-up rows of `pool` for the hours of ``[lo, hi)``, from the holds and denials."""
    window = loading.Window(lo, hi, hi)  # open holds count to `hi`: every hour is complete
    holds = loading.load_holds(conn, window, products=False, pool_ids=[pool.id])
    ut, level = pool_steps(holds, (pool,))[pool.id]
    starts = np.arange(lo, hi, HOUR_NS, dtype=np.int64)
    ends = starts + HOUR_NS
    peak = intervals.bucket_max(ut, level, starts, ends)
    used = intervals.area(ut, level, ends) - intervals.area(ut, level, starts)
    denied = loading.load_denials(conn, lo, hi, window, pool_ids=[pool.id])
    count = np.bincount((denied["at"].to_numpy() - lo) // HOUR_NS, minlength=len(starts))
    keep = np.flatnonzero((peak > 0) | (count > 0))
    return [
        {
            "pool_id": pool.id,
            "hour": _db(int(starts[i])),
            "peak": int(peak[i]),
            "seat_seconds": float(used[i]),
            "denials": int(count[i]),
        }
        for i in keep.tolist()
    ]


def _store(conn: Connection, plan: _Plan) -> bool:
    """Write a computed plan; False (nothing written) when another refresh moved a pool."""
    r, h = rollup_pools_t, rollup_hours_t
    if not is_sqlite(conn):  # SQLite's BEGIN IMMEDIATE already serialises writers
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    now_state = _state(conn)
    for pool_id, version in plan.versions.items():
        known = now_state.get(pool_id)
        if (None if known is None else known[1]) != version:
            return False
    for id_in in id_conditions(conn, rollup_dirty_t.c.id, plan.dirty_ids):
        conn.execute(sa.delete(rollup_dirty_t).where(id_in))
    for pool_id, (lo, until) in plan.ranges.items():
        doomed = h.c.pool_id == pool_id
        if pool_id not in plan.fresh:
            doomed = doomed & (h.c.hour >= _db(lo))
        conn.execute(sa.delete(h).where(doomed))
        if plan.versions[pool_id] is None:
            conn.execute(sa.insert(r).values(pool_id=pool_id, until=_db(until), version=1))
        else:
            conn.execute(
                sa.update(r)
                .where(r.c.pool_id == pool_id)
                .values(until=_db(until), version=r.c.version + 1)
            )
    if plan.rows:
        conn.execute(sa.insert(h), plan.rows)
    return True


@dataclass(frozen=True)
class Refreshed:
    """What a refresh did: ``pools`` and ``hours`` recomputed, roll-up ``rows`` written."""

    pools: int
    hours: int
    rows: int


@store_operation
def refresh(engine: Engine, *, rebuild: bool = False, progress: bool = False) -> Refreshed:
    """Bring the roll-up up to now's hour: recompute what writes marked and the hours that
    ended since the last refresh; with `rebuild`, every pool from its first hold, denial or
    creation. Safe to run at any moment, from any number of processes; a refresh that keeps
    losing to others (:data:`ATTEMPTS` times) gives up, and readers then read the holds for
    what is not rolled up (see :func:`rolled_until`)."""
    for _ in range(ATTEMPTS):
        upto = complete_hours_end()
        with snapshot(engine) as conn:
            catalog = read_catalog(conn)
            plan = _plan(conn, catalog, upto, rebuild)
            if not plan.ranges and not plan.dirty_ids:
                return Refreshed(0, 0, 0)
            pools = {p.id: p for p in catalog.pools}
            with tqdm(
                total=plan.hours, desc="rolling up", unit="hour", disable=not progress, leave=False
            ) as bar:
                for pool_id, (lo, until) in plan.ranges.items():
                    if lo < until:
                        plan.rows += _compute(conn, pools[pool_id], lo, until)
                        bar.update((until - lo) // HOUR_NS)
        with write(engine) as conn:
            if _store(conn, plan):
                computed = sum(1 for lo, until in plan.ranges.values() if lo < until)
                return Refreshed(computed, plan.hours, len(plan.rows))
    return Refreshed(0, 0, 0)


def refresh_before_reading(engine: Engine) -> None:
    """:func:`refresh` for a reader: when the store cannot take the write now (a long import
    holds the lock, a lock time-out), read on; what is not rolled up comes from the holds
    (:func:`rolled_until`), so the result is the same, only slower."""
    try:
        refresh(engine)
    except StoreUnavailable as error:
        log.info("roll-up not refreshed, reading the holds for the rest: %s", error)


def rolled_until(conn: Connection, catalog: Catalog, start: int, end: int) -> int:
    """Where the roll-up stops serving a window starting at `start` (an hour) and ending at
    `end`, in this connection's snapshot (ns, on the hour, between `start` and `end`): the
    earliest of now's hour, `end`'s hour, and every pool's ``until`` and dirty hours. Hours
    before it are read from :func:`hours`; from it on, from the holds."""
    split = min(_floor_hour(end), complete_hours_end())
    state = _state(conn)
    for pool in catalog.pools:
        known = state.get(pool.id)
        split = min(split, start if known is None else known[0])
    for _, _, hour in _dirty(conn):
        split = min(split, hour)
    return max(start, split)


def hours(conn: Connection, lo: int, hi: int) -> pd.DataFrame:
    """The roll-up rows of the hours ``[lo, hi)``: ``pool_id``, ``hour`` (ns), ``peak``,
    ``seat_seconds``, ``denials``; hours without a row had none of them."""
    h = rollup_hours_t
    query = sa.select(h.c.pool_id, h.c.hour, h.c.peak, h.c.seat_seconds, h.c.denials).where(
        h.c.hour >= _db(lo), h.c.hour < _db(hi)
    )
    kinds = {
        "pool_id": "int",
        "hour": "time",
        "peak": "int",
        "seat_seconds": "float",
        "denials": "int",
    }
    return pd.DataFrame(loading.fetch(conn, query, kinds))


def serves(start: int, step: int) -> bool:
    """Whether buckets of `step` ns from `start` are made of whole UTC hours."""
    return start % HOUR_NS == 0 and step % HOUR_NS == 0
