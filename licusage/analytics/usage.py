"""Usage figures over a window: seats in use, denials, peaks and percentiles, the hour-of-week
heat map, top users, unused named seats and idle time (see :mod:`licusage.analytics`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import clock
from ..catalog import Pool, read_catalog
from ..db import store_operation
from ..errors import InvalidInput
from ..models import NAMED, assignments_t, holds_t
from . import intervals, loading, rollup
from .intervals import HOUR_NS, SECOND_NS, Array
from .loading import POOL_COLUMNS

DEFAULT_IDLE_OVER = timedelta(hours=1)
NEAR_FULL = (9, 10)  # "near full" = in use >= 9/10 of the seats, compared in integers
BUSY = (3, 4)  # "busy" (a gauge's warning) = in use >= 3/4 of the seats
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _pool_columns(pools: tuple[Pool, ...]) -> pd.MultiIndex:
    return pd.MultiIndex.from_tuples(
        [(p.product, p.license_type) for p in pools], names=POOL_COLUMNS
    )


def _utc(ns: Array) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True))


def _bucket_frame(lo: Array, data: dict[int, Array], pools: tuple[Pool, ...]) -> pd.DataFrame:
    values = (
        np.column_stack([data[p.id] for p in pools])
        if pools
        else np.empty((len(lo), 0), dtype=np.int64)
    )
    frame = pd.DataFrame(
        values.astype(np.int64), index=_utc(lo), columns=_pool_columns(pools), copy=False
    )
    frame.index.name = "time"
    return frame


def _buckets(window: loading.Window, freq: str | timedelta) -> tuple[Array, Array]:
    step = loading.duration_ns(freq, "freq")
    lo = np.arange(window.start, window.end, step, dtype=np.int64)
    return lo, np.minimum(lo + step, window.end)


@store_operation
def concurrency(
    engine: Engine, start: datetime, end: datetime, freq: str | timedelta = "1h"
) -> pd.DataFrame:
    """Seats in use per pool over time: the exact maximum of in-use within each bucket.

    Index: bucket starts (tz-aware UTC, named ``time``), ``start, start + freq, ...`` before
    ``end``. Columns: one per pool, a MultiIndex (``product``, ``license_type``). Value: the
    highest number of distinct users holding the pool at any instant of ``[bucket, bucket +
    freq)`` (cut at `end`), counting the holds carried in at the bucket start; exact at any
    `freq`, not sampled. Open holds count until ``min(end, now)``. Empty (no rows) when
    ``start == end``; raises :class:`~licusage.errors.InvalidInput` for ``end < start`` or a
    `freq` that is not a positive fixed duration.
    """
    window = loading.window_of(start, end)
    lo, hi = _buckets(window, freq)
    step = loading.duration_ns(freq, "freq")
    if len(lo) and rollup.serves(window.start, step):
        return _bucket_frame(lo, *_rolled_concurrency(engine, window, step, lo, hi))
    return concurrency_from_holds(engine, window, lo, hi)


def concurrency_from_holds(
    engine: Engine, window: loading.Window, lo: Array, hi: Array
) -> pd.DataFrame:
    """:func:`concurrency` over buckets ``[lo[k], hi[k])`` from the holds alone (no roll-up):
    what it does for buckets that are not whole hours, and the benchmarks' reference."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = loading.load_holds(conn, window, products=False)
    steps = rollup.pool_steps(holds, catalog.pools)
    data = {
        pool_id: intervals.bucket_max(ut, level, lo, hi) for pool_id, (ut, level) in steps.items()
    }
    return _bucket_frame(lo, data, catalog.pools)


def _rolled_concurrency(
    engine: Engine, window: loading.Window, step: int, lo: Array, hi: Array
) -> tuple[dict[int, Array], tuple[Pool, ...]]:
    """:func:`concurrency` for buckets of whole hours: the maximum of the roll-up's hourly
    peaks up to :func:`rollup.rolled_until`, the holds from there (the same maxima exactly)."""
    rollup.refresh_before_reading(engine)
    with rollup.snapshot(engine) as conn:
        catalog = read_catalog(conn)
        split = rollup.rolled_until(conn, catalog, window.start, window.end)
        rolled = rollup.hours(conn, window.start, split)
        tail = hi > split  # buckets reaching past the roll-up
        holds = _holds_of(conn, split, window.end if tail.any() else split, window)
    steps = rollup.pool_steps(holds, catalog.pools)
    bucket = (rolled["hour"].to_numpy() - window.start) // step
    data = {}
    for pool in catalog.pools:
        out = np.zeros(len(lo), dtype=np.int64)
        mine = (rolled["pool_id"] == pool.id).to_numpy()
        np.maximum.at(out, bucket[mine], rolled["peak"].to_numpy()[mine])
        ut, level = steps[pool.id]
        out[tail] = np.maximum(
            out[tail], intervals.bucket_max(ut, level, np.maximum(lo[tail], split), hi[tail])
        )
        data[pool.id] = out
    return data, catalog.pools


@store_operation
def denials(
    engine: Engine, start: datetime, end: datetime, freq: str | timedelta = "1D"
) -> pd.DataFrame:
    """Recorded denials per pool and bucket (logins a pool could not serve: full, not named,
    expired). Same layout as :func:`concurrency`: index the bucket starts (UTC), columns a
    (``product``, ``license_type``) MultiIndex, values the number of denials with
    ``bucket <= at < bucket + freq`` (and ``at < end``)."""
    window = loading.window_of(start, end)
    lo, _ = _buckets(window, freq)
    step = loading.duration_ns(freq, "freq")
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        recorded = loading.load_denials(conn, window.start, window.end, window)
    bucket = (recorded["at"].to_numpy() - window.start) // step
    data = {
        pool.id: np.bincount(
            bucket[(recorded["pool_id"] == pool.id).to_numpy()], minlength=len(lo)
        ).astype(np.int64)
        for pool in catalog.pools
    }
    return _bucket_frame(lo, data, catalog.pools)


def _holds_of(conn: Connection, a: int, b: int, window: loading.Window) -> pd.DataFrame:
    """The holds of ``[a, b)`` as the window counts them there (open ones until now)."""
    return loading.load_holds(conn, loading.Window(a, b, window.now), products=False)


def _observed(window: loading.Window, births: Mapping[int, int], pool: Pool) -> tuple[int, int]:
    lo = max(window.start, births.get(pool.id, window.start))
    return lo, max(lo, window.until)


@store_operation
def peaks(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Per pool: seats owned, peak in use and when, time-weighted percentiles, time near full.

    Columns: ``product``, ``license_type``, ``seats`` (owned now), ``peak`` (highest in-use in
    the window), ``peak_at`` (first instant it was reached, UTC; NaT when the peak is 0),
    ``p95``/``p99`` (the smallest in-use count not exceeded during 95% / 99% of the pool's
    observed period), ``share_near_full`` (share of the observed period with in-use >= 90% of
    the seats in force at that moment; NaN when they are unknown throughout), then ``kind`` and ``mean`` (time-weighted mean in use). The observed period is the
    window cut at now and at the pool's creation; a pool with none gets NaN percentiles/shares.
    """
    window = loading.window_of(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = loading.load_holds(conn, window, products=False)
        births = loading.pool_births(conn)
        seat_steps = loading.seat_steps(conn, catalog)
    steps = rollup.pool_steps(holds, catalog.pools)
    rows = []
    for pool in catalog.pools:
        ut, level = steps[pool.id]
        row: dict[str, object] = {
            "product": pool.product,
            "license_type": pool.license_type,
            "seats": pool.seats,
            "peak": 0,
            "peak_at": pd.NaT,
            "p95": np.nan,
            "p99": np.nan,
            "share_near_full": np.nan,
            "kind": pool.kind,
            "mean": np.nan,
        }
        lo, hi = _observed(window, births, pool)
        if hi > lo:
            changes = seat_steps[pool.id][0]
            # pieces of constant in-use and constant seats
            cuts = intervals.union_sorted(ut, changes[(changes > lo) & (changes < hi)])
            starts, durations, levels = intervals.segments(
                cuts, intervals.level_at(ut, level, cuts), lo, hi
            )
            top = int(levels.max())
            seats_then = loading.seats_at(seat_steps[pool.id], starts)
            known = ~np.isnan(seats_then)
            near = (
                None
                if not known.any()
                else known & (NEAR_FULL[1] * levels >= NEAR_FULL[0] * np.nan_to_num(seats_then))
            )
            row.update(
                peak=top,
                peak_at=_utc(starts[[int(np.argmax(levels))]])[0] if top else pd.NaT,
                p95=intervals.weighted_quantile(levels, durations, 0.95),
                p99=intervals.weighted_quantile(levels, durations, 0.99),
                share_near_full=np.nan
                if near is None
                else float(durations[near].sum() / durations.sum()),
                mean=float((levels * durations).sum() / durations.sum()),
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else _PEAK_COLUMNS)
    frame["seats"] = frame["seats"].astype("Int64")  # missing where not known
    frame["peak"] = frame["peak"].astype(np.int64)
    frame["peak_at"] = pd.to_datetime(frame["peak_at"], utc=True)
    for column in ("p95", "p99", "share_near_full", "mean"):
        frame[column] = frame[column].astype(np.float64)
    return frame


_PEAK_COLUMNS = [
    "product",
    "license_type",
    "seats",
    "peak",
    "peak_at",
    "p95",
    "p99",
    "share_near_full",
    "kind",
    "mean",
]


@store_operation
def hour_of_week(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Mean and peak in use per pool by weekday and hour of day (UTC), for a heat map.

    A long DataFrame, one row per pool and (weekday, hour) the window observes: ``product``,
    ``license_type``, ``weekday`` (0 = Monday ... 6 = Sunday), ``day`` (``"Mon"`` ...), ``hour``
    (0-23), ``mean`` (time-weighted mean in use over all of those hours in the pool's observed
    period) and ``peak`` (the highest in use reached in any of them). Hours the observed period
    never covers have no row.
    """
    window = loading.window_of(start, end)
    first = window.start - window.start % HOUR_NS
    rollup.refresh_before_reading(engine)
    with rollup.snapshot(engine) as conn:
        catalog = read_catalog(conn)
        births = loading.pool_births(conn)
        split = rollup.rolled_until(conn, catalog, first, window.end)
        rolled = rollup.hours(conn, first, split)
        observed = {pool.id: _observed(window, births, pool) for pool in catalog.pools}
        # from the holds: what the roll-up does not cover (a pool's partial first hour, and
        # everything from `split` on), each piece in its own step functions
        pieces = {(split, window.end)} | {
            (lo - lo % HOUR_NS, lo - lo % HOUR_NS + HOUR_NS)
            for lo, hi in observed.values()
            if lo % HOUR_NS and lo < hi and lo < split
        }
        held = [
            (a, b, rollup.pool_steps(_holds_of(conn, a, b, window), catalog.pools))
            for a, b in sorted(pieces)
            if a < b
        ]
    parts = []
    for pool in catalog.pools:
        lo, hi = observed[pool.id]
        if hi <= lo:
            continue
        edges = np.arange(lo - lo % HOUR_NS, hi, HOUR_NS, dtype=np.int64)
        b_lo, b_hi = np.maximum(edges, lo), np.minimum(edges + HOUR_NS, hi)
        area = np.zeros(len(edges), dtype=np.float64)
        peak = np.zeros(len(edges), dtype=np.int64)
        whole = (b_lo == edges) & (b_hi == edges + HOUR_NS) & (edges + HOUR_NS <= split)
        mine = rolled[rolled["pool_id"] == pool.id]
        at = (mine["hour"].to_numpy() - edges[0]) // HOUR_NS
        inside = (at >= 0) & (at < len(edges))
        at, mine = at[inside], mine[inside]
        use = whole[at]
        area[at[use]] = mine["seat_seconds"].to_numpy()[use]
        peak[at[use]] = mine["peak"].to_numpy()[use]
        done = whole.copy()
        for a, b, steps in held:
            todo = ~done & (b_lo >= a) & (b_hi <= b)
            ut, level = steps[pool.id]
            area[todo] = intervals.area(ut, level, b_hi[todo]) - intervals.area(
                ut, level, b_lo[todo]
            )
            peak[todo] = intervals.bucket_max(ut, level, b_lo[todo], b_hi[todo])
            done |= todo
        stamps = _utc(edges)
        parts.append(
            pd.DataFrame(
                {
                    "weekday": stamps.day_of_week,
                    "hour": stamps.hour,
                    "area": area,
                    "seconds": (b_hi - b_lo) / SECOND_NS,
                    "peak": peak,
                }
            )
            .groupby(["weekday", "hour"], as_index=False)
            .agg(area=("area", "sum"), seconds=("seconds", "sum"), peak=("peak", "max"))
            .assign(product=pool.product, license_type=pool.license_type)
        )
    columns = ["product", "license_type", "weekday", "day", "hour", "mean", "peak"]
    if not parts:
        return pd.DataFrame(
            {
                "product": pd.Series(dtype=object),
                "license_type": pd.Series(dtype=object),
                "weekday": pd.Series(dtype=np.int64),
                "day": pd.Series(dtype=object),
                "hour": pd.Series(dtype=np.int64),
                "mean": pd.Series(dtype=np.float64),
                "peak": pd.Series(dtype=np.int64),
            }
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["mean"] = frame["area"] / frame["seconds"]
    frame["day"] = frame["weekday"].map(dict(enumerate(WEEKDAYS)))
    frame["weekday"] = frame["weekday"].astype(np.int64)
    frame["hour"] = frame["hour"].astype(np.int64)
    frame["peak"] = frame["peak"].astype(np.int64)
    return frame[columns]


@store_operation
def top_users(engine: Engine, start: datetime, end: datetime, n: int = 20) -> pd.DataFrame:
    """License-hours per user and product inside the window, for the `n` heaviest users.

    A user's holds of one product are merged first (two sessions at once count once), clipped to
    ``[start, min(end, now))``. Columns ``user``, ``product``, ``license_hours``; rows of the `n`
    users with the most license-hours over all products, ordered by that total (descending, then
    user name), then by hours per product (descending).
    """
    n = loading.whole_number(n, "n", 0)
    window = loading.window_of(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = loading.load_holds(conn, window)
    columns = ["user", "product", "license_hours"]
    s = np.maximum(holds["s"].to_numpy(), window.start)
    e = np.minimum(holds["e"].to_numpy(), window.until)
    keep = s < e
    users, names = pd.factorize(holds["user"][keep])
    products = holds["product_id"].to_numpy()[keep]
    width = int(products.max(initial=0)) + 1
    key = users.astype(np.int64) * width + products
    _, _, episode_key, starts, ends = intervals.merge(key, s[keep], e[keep])
    frame = (
        pd.DataFrame(
            {
                "key": episode_key,
                "license_hours": (ends - starts) / HOUR_NS,
            }
        )
        .groupby("key", as_index=False)["license_hours"]
        .sum()
    )
    product_names = {v: k for k, v in catalog.products.items()}
    frame["user"] = np.asarray(names, dtype=object)[(frame["key"] // width).to_numpy()]
    frame["product"] = (frame["key"] % width).map(product_names)
    total = frame.groupby("user")["license_hours"].transform("sum")
    frame = frame.assign(total=total).sort_values(
        ["total", "user", "license_hours", "product"], ascending=[False, True, False, True]
    )
    chosen = frame.drop_duplicates("user")["user"].head(n)
    frame = frame[frame["user"].isin(chosen)]
    out = frame[columns].reset_index(drop=True)
    out["user"] = out["user"].astype(object)
    out["product"] = out["product"].astype(object)
    out["license_hours"] = out["license_hours"].astype(np.float64)
    return out


@store_operation
def unused_named_seats(engine: Engine, days: float = 30) -> pd.DataFrame:
    """Named-user assignments whose user held no license of that pool in the last `days` days.

    Counts assignments made at least `days` days ago (a seat named yesterday is not "unused")
    whose user had no hold of the pool overlapping ``[now - days, now]``. Columns ``product``,
    ``license_type``, ``user``, ``assigned_at`` and ``last_used`` (UTC end of the user's last
    hold of the pool; NaT if never used), ordered by pool then ``last_used`` (never first).
    """
    if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
        raise InvalidInput(f"days must be a positive number, not {days!r}")
    now = clock.now()
    since = clock.to_db(now - timedelta(days=days))
    current = clock.to_db(now)
    a, h = assignments_t, holds_t
    last_used = sa.type_coerce(
        sa.func.max(
            sa.case(  # no joined hold: never used; an open hold: in use now
                (h.c.session_id.is_(None), sa.null()),
                else_=sa.func.coalesce(h.c.released_at, current),
            )
        ),
        sa.DateTime,
    ).label("last_used")
    query = (
        sa.select(a.c.pool_id, a.c.user_name, a.c.assigned_at, last_used)
        .select_from(
            a.outerjoin(h, sa.and_(h.c.pool_id == a.c.pool_id, h.c.user_name == a.c.user_name))
        )
        .where(a.c.assigned_at <= since)
        .group_by(a.c.pool_id, a.c.user_name, a.c.assigned_at)
    )
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        rows = conn.execute(query).all()
    position = {p.id: i for i, p in enumerate(catalog.pools) if p.kind == NAMED}
    records = [
        (
            position[r.pool_id],
            catalog.pools[position[r.pool_id]].product,
            catalog.pools[position[r.pool_id]].license_type,
            r.user_name,
            r.assigned_at,
            r.last_used,
        )
        for r in rows
        if r.pool_id in position and (r.last_used is None or r.last_used < since)
    ]
    frame = pd.DataFrame(
        records, columns=["_pool", "product", "license_type", "user", "assigned_at", "last_used"]
    )
    for column in ("assigned_at", "last_used"):
        frame[column] = pd.to_datetime(frame[column]).dt.tz_localize("UTC")
    frame = frame.sort_values(["_pool", "last_used", "user"], na_position="first")
    return frame.drop(columns="_pool").reset_index(drop=True)


@store_operation
def idle_time(
    engine: Engine,
    start: datetime,
    end: datetime,
    idle_over: timedelta = DEFAULT_IDLE_OVER,
) -> pd.DataFrame:
    """License-hours held while idle longer than `idle_over`, per pool: what an idle-timeout
    policy of that length would have freed.

    An approximation, because the store keeps only each session's *last* activity: a hold counts
    as idle from ``last_activity + idle_over`` (or its grant, if later) until its release (or
    ``min(end, now)`` while still held), clipped to the window. Earlier idle gaps of a session
    that was active again later are not seen, so this is a lower bound. Columns ``product``,
    ``license_type``, ``idle_hours``, ``sessions`` (sessions the policy would have ended inside
    the window), ``held_hours`` (all license-hours held in the window, per hold) and
    ``idle_share`` (idle / held; NaN when nothing was held).
    """
    if isinstance(idle_over, pd.Timedelta):
        idle_over = idle_over.to_pytimedelta()
    if not isinstance(idle_over, timedelta) or idle_over < timedelta(0):
        raise InvalidInput(f"idle_over must be a non-negative timedelta, not {idle_over!r}")
    threshold = int(pd.Timedelta(idle_over).value)
    window = loading.window_of(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = loading.load_holds(conn, window, with_sessions=True)
    s, e = holds["s"].to_numpy(), holds["e"].to_numpy()
    held = np.clip(np.minimum(e, window.until) - np.maximum(s, window.start), 0, None)
    idle_from = np.maximum(holds["last_activity"].to_numpy() + threshold, s)
    idle_from = np.maximum(idle_from, window.start)
    idle = np.clip(np.minimum(e, window.until) - idle_from, 0, None)
    cut = idle_from < np.minimum(e, window.until)
    per_hold = pd.DataFrame(
        {
            "pool_id": holds["pool_id"],
            "idle": idle / HOUR_NS,
            "held": held / HOUR_NS,
            "session_id": np.where(cut, holds["session_id"].to_numpy(), -1),
        }
    )
    sums = per_hold.groupby("pool_id")[["idle", "held"]].sum()
    cut_sessions = per_hold[per_hold["session_id"] >= 0].groupby("pool_id")["session_id"].nunique()
    rows = []
    for pool in catalog.pools:
        idle_hours = float(sums["idle"].get(pool.id, 0.0))
        held_hours = float(sums["held"].get(pool.id, 0.0))
        rows.append(
            {
                "product": pool.product,
                "license_type": pool.license_type,
                "idle_hours": idle_hours,
                "sessions": int(cut_sessions.get(pool.id, 0)),
                "held_hours": held_hours,
                "idle_share": idle_hours / held_hours if held_hours else np.nan,
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=["product", "license_type", "idle_hours", "sessions", "held_hours", "idle_share"],
    )
    frame["sessions"] = frame["sessions"].astype(np.int64)
    for column in ("idle_hours", "held_hours", "idle_share"):
        frame[column] = frame[column].astype(np.float64)
    return frame
