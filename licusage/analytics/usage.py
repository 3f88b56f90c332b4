"""Usage figures over a window: seats in use, denials, peaks and percentiles, the hour-of-week
heat map, top users, unused named seats and idle time (see :mod:`licusage.analytics`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import clock
from ..catalog import Catalog, Pool, read_catalog
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


def _piece_steps(
    conn: Connection,
    a: int,
    b: int,
    window: loading.Window,
    catalog: Catalog,
    births: Mapping[int, int],
    observed: Mapping[int, tuple[int, int]],
) -> dict[int, tuple[Array, Array]]:
    """The step functions of the holds of ``[a, b)``. A partial first hour whose pools all
    start observing at their birth (nothing of theirs is held before it) reads only their holds
    granted from there, an index range, instead of every hold released after `a`."""
    users = [
        pool.id
        for pool in catalog.pools
        if a < observed[pool.id][0] < b and observed[pool.id][0] < observed[pool.id][1]
    ]
    born = [observed[p][0] == births.get(p) for p in users]
    if a % HOUR_NS or b - a != HOUR_NS or not users or not all(born):
        return rollup.pool_steps(_holds_of(conn, a, b, window), catalog.pools)
    holds = loading.load_holds(
        conn,
        loading.Window(a, b, window.now),
        products=False,
        pool_ids=users,
        granted_from=min(observed[p][0] for p in users),
    )
    return rollup.pool_steps(holds, catalog.pools)


def _observed(window: loading.Window, births: Mapping[int, int], pool: Pool) -> tuple[int, int]:
    lo = max(window.start, births.get(pool.id, window.start))
    return lo, max(lo, window.until)


def _steps_not_rolled_up(
    conn: Connection,
    window: loading.Window,
    catalog: Catalog,
    births: Mapping[int, int],
    observed: Mapping[int, tuple[int, int]],
    split: int,
) -> dict[tuple[int, int], dict[int, tuple[Array, Array]]]:
    """The step functions of the holds of what the roll-up does not cover, each ``[a, b)`` on
    its own, in time order: everything from `split` (where the roll-up ends) on, and each
    pool's partial first hour (:func:`_piece_steps`)."""
    ranges = {(split, window.end)} | {
        (lo - lo % HOUR_NS, lo - lo % HOUR_NS + HOUR_NS)
        for lo, hi in observed.values()
        if lo % HOUR_NS and lo < hi and lo < split
    }
    return {
        (a, b): rollup.pool_steps(_holds_of(conn, a, b, window), catalog.pools)
        if a == split
        else _piece_steps(conn, a, b, window, catalog, births, observed)
        for a, b in sorted(ranges)
        if a < b
    }


@store_operation
def peaks(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Per pool: seats owned, peak in use and when, time-weighted percentiles, time near full.

    Columns: ``product``, ``license_type``, ``seats`` (owned now), ``peak`` (highest in-use in
    the window), ``peak_at`` (first instant it was reached, UTC; NaT when the peak is 0),
    ``p95``/``p99`` (the smallest in-use count not exceeded during 95% / 99% of the pool's
    observed period), ``share_near_full`` (share of the observed period with in-use >= 90% of
    the seats in force at that moment; NaN when they are unknown throughout), then ``kind`` and
    ``mean`` (time-weighted mean in use). The observed period is the window cut at now and at
    the pool's creation; a pool with none gets NaN percentiles/shares.

    Whole hours come from the hourly roll-up (their peak, lowest level, first peak instant and
    exact seat-microseconds; how long each level lasted only for the few hours a percentile or
    the time near full depends on); partial hours and what is not rolled up come from the holds.
    The result is the same as :func:`peaks_from_holds`'.
    """
    window = loading.window_of(start, end)
    first = window.start - window.start % HOUR_NS
    rollup.refresh_before_reading(engine)
    with rollup.snapshot(engine) as conn:
        catalog = read_catalog(conn)
        births = loading.pool_births(conn)
        seat_steps = loading.seat_steps(conn, catalog)
        split = rollup.rolled_until(conn, catalog, first, window.end)
        rolled = rollup.hours(conn, first, split)
        observed = {pool.id: _observed(window, births, pool) for pool in catalog.pools}
        held = _steps_not_rolled_up(conn, window, catalog, births, observed, split)
        figures = {}
        for pool in catalog.pools:
            lo, hi = observed[pool.id]
            if hi > lo:
                mine = rolled[(rolled["pool_id"] == pool.id).to_numpy()]
                figures[pool.id] = _rolled_figures(
                    conn, window, pool, lo, hi, split, mine, held, seat_steps[pool.id]
                )
    return _peaks_frame(catalog.pools, figures)


def peaks_from_holds(engine: Engine, window: loading.Window) -> pd.DataFrame:
    """:func:`peaks` over `window` from the holds alone (no roll-up): the benchmarks' and the
    property tests' reference."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = loading.load_holds(conn, window, products=False)
        births = loading.pool_births(conn)
        seat_steps = loading.seat_steps(conn, catalog)
    steps = rollup.pool_steps(holds, catalog.pools)
    figures = {}
    for pool in catalog.pools:
        lo, hi = _observed(window, births, pool)
        if hi > lo:
            ut, level = steps[pool.id]
            pieces = _pieces(ut, level, seat_steps[pool.id], lo, hi)
            figures[pool.id] = _Figures.of_pieces(pieces, hi - lo)
    return _peaks_frame(catalog.pools, figures)


@dataclass
class _Pieces:
    """In use of a pool on an interval, as pieces of constant in use and constant seats."""

    starts: Array
    durations: Array  # ns
    levels: Array
    seats: Array  # float, NaN unknown

    @property
    def near(self) -> Array:
        return _near(self.levels, self.seats)


def _near(levels: Array, seats: Array) -> Array:
    """Whether in use `levels` is near full (>= 90 %) of known `seats` (NaN: unknown). A pool
    of no seats is so only while someone uses it (an expired license nobody asks for is not a
    full pool, as the seat gauges say)."""
    known = ~np.isnan(seats)
    return known & (levels > 0) & (NEAR_FULL[1] * levels >= NEAR_FULL[0] * np.nan_to_num(seats))


def _pieces(ut: Array, level: Array, seat_step: tuple[Array, Array], lo: int, hi: int) -> _Pieces:
    changes = seat_step[0]
    cuts = intervals.union_sorted(ut, changes[(changes > lo) & (changes < hi)])
    starts, durations, levels = intervals.segments(
        cuts, intervals.level_at(ut, level, cuts), lo, hi
    )
    return _Pieces(starts, durations, levels, loading.seats_at(seat_step, starts))


def _concat(parts: list[_Pieces]) -> _Pieces:
    return _Pieces(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            if parts
            else np.empty(0, dtype=np.float64 if name == "seats" else np.int64)
            for name in ("starts", "durations", "levels", "seats")
        )
    )


def _share(part: int, total: int) -> float:
    """``part / total`` as numpy divides int64 durations (the percentiles' arithmetic)."""
    return float(np.int64(part) / np.int64(total))


@dataclass
class _Figures:
    """One pool's figures over its observed period of `total` ns."""

    peak: int
    peak_at: int | None  # ns
    p95: float
    p99: float
    near: int | None  # ns near full; None: seats unknown throughout
    area_us: int  # seat-microseconds in use
    total: int  # ns

    @classmethod
    def of_pieces(cls, pieces: _Pieces, total: int) -> _Figures:
        levels, durations = pieces.levels, pieces.durations
        top = int(levels.max())
        known = ~np.isnan(pieces.seats)
        return cls(
            peak=top,
            peak_at=int(pieces.starts[int(np.argmax(levels))]) if top else None,
            p95=intervals.weighted_quantile(levels, durations, 0.95),
            p99=intervals.weighted_quantile(levels, durations, 0.99),
            near=int(durations[pieces.near].sum()) if known.any() else None,
            area_us=int((levels * (durations // 1000)).sum()),
            total=total,
        )

    def row(self) -> dict[str, object]:
        return {
            "peak": self.peak,
            "peak_at": _utc(np.array([self.peak_at]))[0] if self.peak_at is not None else pd.NaT,
            "p95": self.p95,
            "p99": self.p99,
            "share_near_full": np.nan if self.near is None else _share(self.near, self.total),
            # the store keeps microseconds: the mean is exact integers divided once
            "mean": self.area_us / (self.total // 1000),
        }


def _rolled_figures(
    conn: Connection,
    window: loading.Window,
    pool: Pool,
    lo: int,
    hi: int,
    split: int,
    rolled: pd.DataFrame,
    held: dict[tuple[int, int], dict[int, tuple[Array, Array]]],
    seat_step: tuple[Array, Array],
) -> _Figures:
    """:func:`peaks`' figures of one pool observed on ``[lo, hi)``: the whole hours of
    ``[lo, split)`` from the roll-up rows `rolled`, the rest from the holds' steps `held`."""
    # the pieces from the holds: before the first whole hour, and from `split` on
    whole_lo = min(-(-lo // HOUR_NS) * HOUR_NS, max(split, lo))
    whole_hi = max(split, whole_lo) if lo < split else whole_lo
    exact = []
    if lo < whole_lo:
        a = lo - lo % HOUR_NS
        exact.append(_pieces(*held[(a, a + HOUR_NS)][pool.id], seat_step, lo, whole_lo))
    hours = np.arange(whole_lo, whole_hi, HOUR_NS, dtype=np.int64)
    tail = max(whole_hi, lo)
    # whole hours: every one, 0 in use where the roll-up has no row
    at = (rolled["hour"].to_numpy() - whole_lo) // HOUR_NS
    inside = (at >= 0) & (at < len(hours))
    at = at[inside]
    low = np.zeros(len(hours), dtype=np.int64)
    peak = np.zeros(len(hours), dtype=np.int64)
    peak_at = np.full(len(hours), loading.NAT, dtype=np.int64)
    low[at] = rolled["low"].to_numpy()[inside]
    peak[at] = rolled["peak"].to_numpy()[inside]
    peak_at[at] = rolled["peak_at"].to_numpy()[inside]
    area_us = int(rolled["used_us"].to_numpy()[inside].sum())
    # seats: constant through an hour unless a change falls inside it
    changes = seat_step[0]
    inner = changes[(changes > whole_lo) & (changes < whole_hi) & (changes % HOUR_NS != 0)]
    seats = loading.seats_at(seat_step, hours)
    mixed = np.zeros(len(hours), dtype=bool)
    mixed[(inner - whole_lo) // HOUR_NS] = True
    near_hours = _near(low, seats)  # the whole hour is near full
    maybe = _near(peak, seats) & ~near_hours  # part of it may be
    for index in np.flatnonzero(mixed).tolist():
        h = int(hours[index])
        values = loading.seats_at(
            seat_step, np.r_[h, changes[(changes > h) & (changes < h + HOUR_NS)]]
        )
        all_near = bool(_near(np.full(len(values), low[index]), values).all())
        none_near = not _near(np.full(len(values), peak[index]), values).any()
        near_hours[index], maybe[index] = all_near, not (all_near or none_near)
    if hi > tail:
        exact.append(_pieces(*held[(split, window.end)][pool.id], seat_step, tail, hi))
    pieces = _concat(exact)
    known = bool((~np.isnan(pieces.seats)).any()) or _seats_known(seat_step, whole_lo, whole_hi)
    total = hi - lo

    def histograms(wanted: Array) -> dict[int, tuple[Array, Array]]:
        return rollup.levels(conn, pool.id, hours[wanted])

    # time near full: exact pieces, whole hours near full, and the hours partly near full
    near = int(pieces.durations[pieces.near].sum()) + HOUR_NS * int(near_hours.sum())
    plain = maybe & ~mixed
    for index, (levels, micros) in zip(
        np.flatnonzero(plain).tolist(),
        _in_order(histograms(plain), hours[plain]),
        strict=True,
    ):
        near += 1000 * int(micros[_near(levels, np.full(len(levels), seats[index]))].sum())
    for index in np.flatnonzero(maybe & mixed).tolist():  # rare: read the hour's holds
        h = int(hours[index])
        holds = loading.load_holds(
            conn, loading.Window(h, h + HOUR_NS, window.now), products=False, pool_ids=[pool.id]
        )
        ut, level = rollup.pool_steps(holds, (pool,))[pool.id]
        one = _pieces(ut, level, seat_step, h, h + HOUR_NS)
        near += int(one.durations[one.near].sum())
    # the peak and its first instant, in time order: first piece, whole hours, tail
    top = max(int(pieces.levels.max(initial=0)), int(peak.max(initial=0)))
    first_at = None
    if top:
        exact_top = pieces.starts[pieces.levels == top]
        hour_top = peak_at[peak == top]
        candidates = np.r_[exact_top, hour_top]
        first_at = int(candidates.min())
    exact_area = int((pieces.levels * (pieces.durations // 1000)).sum())
    return _Figures(
        peak=top,
        peak_at=first_at,
        p95=_rolled_quantile(pieces, low, peak, hours, histograms, total, 0.95),
        p99=_rolled_quantile(pieces, low, peak, hours, histograms, total, 0.99),
        near=near if known else None,
        area_us=exact_area + area_us,
        total=total,
    )


def _in_order(found: dict[int, tuple[Array, Array]], hours: Array) -> list[tuple[Array, Array]]:
    """The histograms of `hours`, in that order (every one has a ``rollup_levels`` row)."""
    return [found[int(hour)] for hour in hours.tolist()]


def _seats_known(seat_step: tuple[Array, Array], lo: int, hi: int) -> bool:
    """Whether the seats are known at some instant of ``[lo, hi)``."""
    if hi <= lo:
        return False
    changes = seat_step[0]
    at = np.r_[lo, changes[(changes > lo) & (changes < hi)]]
    return bool((~np.isnan(loading.seats_at(seat_step, at))).any())


def _rolled_quantile(
    pieces: _Pieces,
    low: Array,
    peak: Array,
    hours: Array,
    histograms: Callable[[Array], dict[int, tuple[Array, Array]]],
    total: int,
    q: float,
) -> float:
    """:func:`intervals.weighted_quantile` of in use over exact `pieces` and whole hours
    (`low`, `peak` per hour): the smallest level L whose time at or below it, F(L), reaches the
    share `q`. F lies between counting each hour at its peak and at its lowest level; between
    the two bounds' answers F is computed exactly, reading the levels of only the hours whose
    lowest and peak levels straddle that range."""
    top = max(int(pieces.levels.max(initial=0)), int(peak.max(initial=0)))
    exact = np.zeros(top + 1, dtype=np.int64)
    np.add.at(exact, pieces.levels, pieces.durations)
    below = np.cumsum(exact)  # exact time at <= L
    by_peak = np.cumsum(np.bincount(peak, minlength=top + 1))  # hours entirely <= L
    by_low = np.cumsum(np.bincount(low, minlength=top + 1))  # hours partly <= L
    target = q * (1 - 1e-12)

    def reaches(time_at_or_below: Array) -> Array:
        return time_at_or_below / np.int64(total) >= target  # as weighted_quantile divides

    first_pass = int(np.argmax(reaches(below + HOUR_NS * by_peak)))  # F >= this bound
    least = int(np.argmax(reaches(below + HOUR_NS * by_low)))  # F <= this bound
    if least == first_pass:
        return float(least)
    span = np.arange(least, first_pass, dtype=np.int64)  # the answer is here or first_pass
    # hours whose lowest level is at most some L of the span and whose peak is above it (an
    # hour at one level throughout is counted exactly by the bounds)
    straddle = (low < first_pass) & (peak > least) & (low < peak)
    f = below[span] + HOUR_NS * by_peak[span]
    for (levels, micros), hour_peak in zip(
        _in_order(histograms(straddle), hours[straddle]), peak[straddle].tolist(), strict=True
    ):
        cumulative = np.r_[0, np.cumsum(1000 * micros)]
        part = cumulative[np.searchsorted(levels, span, side="right")]
        f += np.where(span < hour_peak, part, 0)
    passing = np.flatnonzero(reaches(f))
    return float(span[passing[0]]) if len(passing) else float(first_pass)


def _peaks_frame(pools: tuple[Pool, ...], figures: Mapping[int, _Figures]) -> pd.DataFrame:
    rows = []
    for pool in pools:
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
        if pool.id in figures:
            row.update(figures[pool.id].row())
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
def hour_of_week(
    engine: Engine, start: datetime, end: datetime, timezone: str | tzinfo | None = None
) -> pd.DataFrame:
    """Mean and peak in use per pool by weekday and hour of day in `timezone` (an IANA name or
    a tzinfo; default UTC), for a heat map. Each hour of UTC counts in the local hour it
    starts in (the same hour, for a zone whose offset is whole hours; summer time included).

    A long DataFrame, one row per pool and (weekday, hour) the window observes: ``product``,
    ``license_type``, ``weekday`` (0 = Monday ... 6 = Sunday), ``day`` (``"Mon"`` ...), ``hour``
    (0-23), ``mean`` (time-weighted mean in use over all of those hours in the pool's observed
    period) and ``peak`` (the highest in use reached in any of them). Hours the observed period
    never covers have no row.
    """
    local = timezone if isinstance(timezone, tzinfo) else clock.zone(timezone)
    window = loading.window_of(start, end)
    first = window.start - window.start % HOUR_NS
    rollup.refresh_before_reading(engine)
    with rollup.snapshot(engine) as conn:
        catalog = read_catalog(conn)
        births = loading.pool_births(conn)
        split = rollup.rolled_until(conn, catalog, first, window.end)
        rolled = rollup.hours(conn, first, split)
        observed = {pool.id: _observed(window, births, pool) for pool in catalog.pools}
        held = _steps_not_rolled_up(conn, window, catalog, births, observed, split)
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
        for (a, b), steps in held.items():
            todo = ~done & (b_lo >= a) & (b_hi <= b)
            ut, level = steps[pool.id]
            area[todo] = intervals.area(ut, level, b_hi[todo]) - intervals.area(
                ut, level, b_lo[todo]
            )
            peak[todo] = intervals.bucket_max(ut, level, b_lo[todo], b_hi[todo])
            done |= todo
        stamps = _utc(edges).tz_convert(local)
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
        holds = loading.load_holds(conn, window, reservations=False)  # users only
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
