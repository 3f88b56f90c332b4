"""The hourly roll-up's read side: bringing it up to date (:func:`refresh`) and reading it
in one snapshot with the holds it does not cover (:func:`snapshot`, :func:`rolled_until`,
:func:`hours`, :func:`levels`). The write side, marking what writes changed, is :mod:`licusage.rollup`.

A roll-up row is one pool's use in one complete UTC hour ``[hour, hour + 1h)``: ``peak`` (the
exact maximum of in use, counted as everywhere in the analytics) and ``peak_at`` (the first
instant of the hour it was reached), ``low`` (the minimum), ``seat_seconds`` (the integral of in
use; ``used_us`` the same in whole seat-microseconds, exact) and ``denials``; for an hour whose
in use changed, a ``rollup_levels`` row says how long each level lasted. Holds still open count to the end of the hour, which is what every
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
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm  # the plain bar: shown only on a terminal (the CLI)

from .. import clock
from ..catalog import Catalog, Pool, read_catalog
from ..db import is_sqlite, store_operation, write
from ..errors import StoreUnavailable
from ..models import (
    PER_CHECKOUT,
    rollup_dirty_t,
    rollup_hours_t,
    rollup_levels_t,
    rollup_pools_t,
)
from ..sessions import id_conditions
from . import intervals, loading
from .intervals import HOUR_NS, Array

log = logging.getLogger(__name__)

# any constant: the PostgreSQL advisory lock that serialises the refreshes' writes
_PG_LOCK_KEY = 0x11C0_0012
ATTEMPTS = 5  # plans of one refresh, when other refreshes keep winning


def pool_steps(holds: pd.DataFrame, pools: tuple[Pool, ...]) -> dict[int, tuple[Array, Array]]:
    """pool id -> in-use step function from loaded holds: distinct users, or for a pool counted
    per checkout the sum of the licenses held (the counting rule of all the analytics); the
    licenses of a reservation (``reserved``) all count, whatever the rule."""
    users = pd.factorize(holds["user"])[0].astype(np.int64)
    licenses = holds["licenses"].to_numpy()
    reserved = holds["reserved"].to_numpy(dtype=bool)
    steps = {}
    for pool in pools:  # a loop per pool; everything per session is vectorised
        mask = (holds["pool_id"] == pool.id).to_numpy()
        s, e = holds["s"].to_numpy()[mask], holds["e"].to_numpy()[mask]
        keep = s < e
        every = keep if pool.counting == PER_CHECKOUT else keep & reserved[mask]
        count = licenses[mask][every]
        starts, ends = np.repeat(s[every], count), np.repeat(e[every], count)
        shared = keep & ~every  # a user's sessions share their seat
        if shared.any():
            _, _, _, first, last = intervals.merge(users[mask][shared], s[shared], e[shared])
            starts, ends = np.r_[starts, first], np.r_[ends, last]
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
    level_rows: list[dict[str, object]] = field(default_factory=list)
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


def hour_pieces(ut: Array, level: Array, lo: int, hi: int) -> tuple[Array, Array, Array]:
    """The step function on ``[lo, hi)`` (both on the hour) as constant pieces cut at every
    hour: starts, durations (ns) and levels; every hour starts a piece."""
    edges = np.arange(lo, hi, HOUR_NS, dtype=np.int64)
    cuts = intervals.union_sorted(ut[(ut > lo) & (ut < hi)], edges)
    return intervals.segments(cuts, intervals.level_at(ut, level, cuts), lo, hi)


def encode_levels(levels: Array, micros: Array) -> str:
    """An hour's ``rollup_levels.levels``: ``"level microseconds ..."``, levels ascending."""
    pairs = np.empty(2 * len(levels), dtype=np.int64)
    pairs[0::2], pairs[1::2] = levels, micros
    return " ".join(map(str, pairs.tolist()))


def decode_levels(text: str) -> tuple[Array, Array]:
    """:func:`encode_levels` read back: levels and microseconds (int64)."""
    pairs = np.array(text.split(), dtype=np.int64)
    return pairs[0::2], pairs[1::2]


def _compute(
    conn: Connection, pool: Pool, lo: int, hi: int
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The roll-up rows of `pool` for the hours of ``[lo, hi)``, from the holds and denials:
    ``rollup_hours`` rows and ``rollup_levels`` rows."""
    window = loading.Window(lo, hi, hi)  # open holds count to `hi`: every hour is complete
    holds = loading.load_holds(conn, window, products=False, pool_ids=[pool.id])
    ut, level = pool_steps(holds, (pool,))[pool.id]
    starts, durations, levels = hour_pieces(ut, level, lo, hi)
    micros = durations // 1000  # the store keeps microseconds: every piece is whole ones
    first = np.searchsorted(starts, np.arange(lo, hi, HOUR_NS, dtype=np.int64))
    peak = np.maximum.reduceat(levels, first)
    low = np.minimum.reduceat(levels, first)
    used = np.add.reduceat(levels * micros, first)
    hour_of = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(starts)]))
    at_peak = np.where(levels == peak[hour_of], np.arange(len(starts)), len(starts))
    peak_at = starts[np.minimum(np.minimum.reduceat(at_peak, first), len(starts) - 1)]
    denied = loading.load_denials(conn, lo, hi, window, pool_ids=[pool.id])
    count = np.bincount((denied["at"].to_numpy() - lo) // HOUR_NS, minlength=len(first))
    keep = np.flatnonzero((peak > 0) | (count > 0))
    rows: list[dict[str, object]] = [
        {
            "pool_id": pool.id,
            "hour": _db(lo + i * HOUR_NS),
            "peak": int(peak[i]),
            "seat_seconds": float(used[i] / 1e6),
            "denials": int(count[i]),
            "low": int(low[i]),
            "peak_at": _db(int(peak_at[i])) if peak[i] else None,
            "used_us": int(used[i]),
        }
        for i in keep.tolist()
    ]
    # how long each level lasted, for the hours whose level changed: pieces by (hour, level)
    varied = (low < peak)[hour_of]
    order = np.lexsort((levels[varied], hour_of[varied]))
    v_hour, v_level, v_micros = hour_of[varied][order], levels[varied][order], micros[varied][order]
    new_group = np.ones(len(v_hour), dtype=bool)
    new_group[1:] = (v_hour[1:] != v_hour[:-1]) | (v_level[1:] != v_level[:-1])
    group = np.flatnonzero(new_group)
    g_hour, g_level = v_hour[group], v_level[group]
    g_micros = np.add.reduceat(v_micros, group) if len(group) else v_micros[:0]
    new_hour = np.ones(len(g_hour), dtype=bool)
    new_hour[1:] = g_hour[1:] != g_hour[:-1]
    bounds = np.flatnonzero(new_hour)
    ends = np.r_[bounds[1:], len(g_hour)].astype(np.int64) if len(bounds) else bounds
    level_rows = [
        {
            "pool_id": pool.id,
            "hour": _db(lo + int(g_hour[a]) * HOUR_NS),
            "levels": encode_levels(g_level[a:b], g_micros[a:b]),
        }
        for a, b in zip(bounds.tolist(), ends.tolist(), strict=True)
    ]
    return rows, level_rows


def _store(conn: Connection, plan: _Plan) -> bool:
    """Write a computed plan; False (nothing written) when another refresh moved a pool."""
    r, h, v = rollup_pools_t, rollup_hours_t, rollup_levels_t
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
        for table in (h, v):
            doomed = table.c.pool_id == pool_id
            if pool_id not in plan.fresh:
                doomed = doomed & (table.c.hour >= _db(lo))
            conn.execute(sa.delete(table).where(doomed))
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
    if plan.level_rows:
        conn.execute(sa.insert(v), plan.level_rows)
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
                        rows, level_rows = _compute(conn, pools[pool_id], lo, until)
                        plan.rows += rows
                        plan.level_rows += level_rows
                        bar.update((until - lo) // HOUR_NS)
        with write(engine) as conn:
            if _store(conn, plan):
                computed = sum(1 for lo, until in plan.ranges.values() if lo < until)
                return Refreshed(computed, plan.hours, len(plan.rows))
    return Refreshed(0, 0, 0)


def refresh_before_reading(engine: Engine) -> None:
    """:func:`refresh` for a reader: when the store cannot take the write now (a long import
    holds the lock, a lock time-out) or at all (a row over its length limit), read on; what is not rolled up comes from the holds
    (:func:`rolled_until`), so the result is the same, only slower."""
    try:
        refresh(engine)
    except StoreUnavailable as error:
        log.info("roll-up not refreshed, reading the holds for the rest: %s", error)
    except exc.DataError as error:  # a row over the store's limits (SQLite's length limit)
        log.warning("roll-up not written, reading the holds for the rest: %s", error)


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
    ``seat_seconds``, ``denials``, ``low``, ``peak_at`` (ns, :data:`~.loading.NAT` for a peak
    of 0) and ``used_us``; hours without a row had none of them (0 in use throughout)."""
    h = rollup_hours_t
    query = sa.select(
        h.c.pool_id,
        h.c.hour,
        h.c.peak,
        h.c.seat_seconds,
        h.c.denials,
        h.c.low,
        h.c.peak_at,
        h.c.used_us,
    ).where(h.c.hour >= _db(lo), h.c.hour < _db(hi))
    kinds = {
        "pool_id": "int",
        "hour": "time",
        "peak": "int",
        "seat_seconds": "float",
        "denials": "int",
        "low": "int",
        "peak_at": "time",
        "used_us": "int",
    }
    return pd.DataFrame(loading.fetch(conn, query, kinds))


def levels(conn: Connection, pool_id: int, wanted: Array) -> dict[int, tuple[Array, Array]]:
    """hour (ns) -> how long each level lasted in it (levels, microseconds), for the hours of
    `wanted` (ns) that have a ``rollup_levels`` row (those whose level changed)."""
    v = rollup_levels_t
    out: dict[int, tuple[Array, Array]] = {}
    stamps = [_db(int(hour)) for hour in np.unique(wanted).tolist()]
    for begin in range(0, len(stamps), 500):
        query = sa.select(v.c.hour, v.c.levels).where(
            v.c.pool_id == pool_id, v.c.hour.in_(stamps[begin : begin + 500])
        )
        for hour, text in conn.execute(query):
            out[_ns(hour)] = decode_levels(text)
    return out


def serves(start: int, step: int) -> bool:
    """Whether buckets of `step` ns from `start` are made of whole UTC hours."""
    return start % HOUR_NS == 0 and step % HOUR_NS == 0
