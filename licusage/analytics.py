"""Usage analytics over the session history: an Engine and a time window in, pandas out.

Definitions shared by every function here (see ``docs/analytics.md`` for the long form):

* **Window**: ``start`` (inclusive) to ``end`` (exclusive). Naive datetimes are taken as UTC;
  results carry tz-aware UTC timestamps. The window is cut at :func:`licusage.clock.now`
  wherever "how long" matters: a license still held (``released_at`` NULL) counts as held until
  ``min(end, now)``.
* **In use** of a pool at instant ``t``: the number of *distinct users* holding a license of the
  pool with ``granted_at <= t < released_at``. A user with two sessions on the pool takes one seat.
* **Buckets** are half-open, ``[bucket_start, bucket_start + freq)``, anchored at ``start``; the
  last bucket stops at ``end``. ``freq`` is a fixed duration (``"15min"``, ``"1h"``, ``"1D"``,
  ``"7D"`` or a ``timedelta``); calendar frequencies such as months are refused.
* **Observed period** of a pool (for time-weighted figures): the window, starting no earlier than
  the pool's creation (or its first recorded hold or denial, if older: imported history) and
  ending no later than now.
* Seat counts are the pools' current seats: the store keeps no history of seat changes.

The heavy lifting is vectorised numpy/pandas over one query per table (never a Python loop per
session): intervals are merged per user by sort + running maximum, turned into +1/-1 events,
summed cumulatively into a step function of in-use per pool, and reduced per bucket. The
what-if replay, being first come first served, is one tight loop over the requests of a pool
with an integer heap of seat releases.
"""

from __future__ import annotations

import functools
import heapq
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from . import clock
from .catalog import Catalog, Pool, read_catalog
from .db import is_sqlite, store_operation
from .errors import InvalidInput, UnknownLicenseType
from .models import NAMED, assignments_t, denials_t, holds_t, pools_t, sessions_t

__all__ = [
    "DEFAULT_IDLE_OVER",
    "concurrency",
    "denials",
    "hour_of_week",
    "idle_time",
    "peaks",
    "pool_label",
    "replay",
    "right_size",
    "top_users",
    "unused_named_seats",
]

log = logging.getLogger(__name__)

HOUR_NS = 3_600_000_000_000
SECOND_NS = 1_000_000_000
DEFAULT_IDLE_OVER = timedelta(hours=1)
# typical length of a replayed denied request when the window has no finished hold to learn from
FALLBACK_REQUEST_NS = HOUR_NS
NEAR_FULL = (9, 10)  # "near full" = in use >= 9/10 of the seats, compared in integers
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
POOL_COLUMNS = ["product", "license_type"]

Array = np.ndarray


# ----------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Window:
    """A window in integer nanoseconds since the epoch (UTC)."""

    start: int
    end: int
    now: int

    @property
    def until(self) -> int:
        """Where held time stops counting: ``min(end, now)``, never before ``start``."""
        return max(self.start, min(self.end, self.now))

    def db(self, ns: int) -> datetime:
        """`ns` as the store's naive UTC, floored to the microsecond."""
        return pd.Timestamp(ns - ns % 1000, unit="ns").to_pydatetime()


def _instant(value: object, name: str) -> int:
    if not isinstance(value, datetime) or pd.isna(value):
        raise InvalidInput(f"{name} must be a datetime, not {value!r}")
    return int(pd.Timestamp(clock.to_utc(value)).value)


def _window(start: object, end: object) -> _Window:
    lo, hi = _instant(start, "start"), _instant(end, "end")
    if hi < lo:
        raise InvalidInput(f"end ({end}) is before start ({start})")
    return _Window(lo, hi, _instant(clock.now(), "now"))


def _duration_ns(value: object, name: str) -> int:
    """A positive fixed duration (timedelta, pandas Timedelta or a string like "15min")."""
    if isinstance(value, bool) or not isinstance(value, str | timedelta):
        raise InvalidInput(f"{name} must be a duration such as '1h' or a timedelta, not {value!r}")
    try:
        ns = pd.Timedelta(value).value
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"{name} must be a fixed duration, not {value!r}: {error}") from None
    if pd.isna(ns) or ns <= 0:
        raise InvalidInput(f"{name} must be a positive duration, not {value!r}")
    return int(ns)


def _count(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidInput(f"{name} must be a whole number >= {low}, not {value!r}")
    return int(value)


def pool_label(product: str, license_type: str) -> str:
    """How plots and tables name a pool: ``"Case Management / Concurrent User"``."""
    return f"{product} / {license_type}"


# ----------------------------------------------------------------------------------- loading


NAT = np.iinfo(np.int64).min
UNIT_SEPARATOR = "\x1f"
NULL_TEXT = "\x00"  # no stored name may contain NUL


def _times_ns(values: list | np.ndarray) -> Array:
    """Naive-UTC datetimes (or ISO text) as int64 nanoseconds; None/NaT become :data:`NAT`."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    if isinstance(values[0], str):
        parsed = np.array(values, dtype="datetime64[us]")  # ISO text, parsed in C
    else:
        parsed = pd.to_datetime(pd.Series(values, dtype=object)).to_numpy(dtype="datetime64[us]")
    return parsed.astype("datetime64[ns]").view(np.int64)


def _parse_packed(text: str | None, kind: str, count: int) -> Array | None:
    """A packed integer column (values joined by :data:`UNIT_SEPARATOR`) parsed by
    :func:`numpy.fromstring`, without splitting it into Python strings. None for other kinds
    or when the text has another shape (the caller splits it then)."""
    if text is None or count == 0 or kind != "int":
        return None
    if kind == "int":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a malformed value: split instead
                values = np.fromstring(text, dtype=np.int64, sep=UNIT_SEPARATOR)
        except (ValueError, DeprecationWarning):
            return None
        return values if len(values) == count else None
    return None  # datetimes: splitting and parsing in C is faster than digit arithmetic


def _fetch(conn: Connection, query: sa.Select, kinds: Mapping[str, str]) -> dict[str, Array]:
    """Run `query`; return its columns as numpy arrays by kind: ``"int"`` (int64, no NULLs),
    ``"time"`` (int64 ns, NULL as :data:`NAT`) or ``"text"`` (object).

    Fetching a million rows one Python tuple at a time dominates the analytics on SQLite, so
    there the rows come back as one row of ``group_concat`` strings, split and parsed in C; a
    value containing the separator falls back to the row-wise fetch.
    """
    columns: list[list | Array] | None = None
    if is_sqlite(conn):
        sub = query.subquery()
        packed_query = sa.select(
            sa.func.count(),
            *[
                sa.func.group_concat(
                    sa.func.coalesce(
                        sa.cast(column, sa.Text), "NaT" if kind == "time" else NULL_TEXT
                    ),
                    UNIT_SEPARATOR,
                )
                for column, kind in zip(sub.c, kinds.values(), strict=True)
            ],
        )
        try:
            packed = conn.execute(packed_query).one()
        except (exc.DataError, exc.OperationalError) as error:  # e.g. over the string limit
            conn.rollback()
            log.info("fetching row by row: %s", error)
        else:
            count, texts = packed[0], packed[1:]
            split: list[list | Array] = []
            for text, kind in zip(texts, kinds.values(), strict=True):
                parsed = _parse_packed(text, kind, count)
                if parsed is not None:
                    split.append(parsed)
                else:
                    split.append([] if text is None else text.split(UNIT_SEPARATOR))
            if all(len(values) == count for values in split):
                columns = split
    if columns is None:
        rows = conn.execute(query).all()
        columns = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in kinds]
    out = {}
    for (name, kind), values in zip(kinds.items(), columns, strict=True):
        if isinstance(values, np.ndarray) and kind != "text":
            out[name] = values  # parsed from the packed text already
        elif kind == "int":
            out[name] = np.array(values, dtype=np.int64)
        elif kind == "time":
            out[name] = _times_ns(values)
        else:
            array = np.array(values, dtype=object)
            array[array == NULL_TEXT] = None
            out[name] = array
    return out


def _load_holds(
    conn: Connection, window: _Window, *, with_sessions: bool = False, products: bool = True
) -> pd.DataFrame:
    """Holds that overlap the window: ``pool_id``, ``product_id`` (unless not `products`),
    ``user``, ``s``, ``e`` (ns); with `with_sessions` also ``session_id`` and the session's
    ``last_activity``.

    Open holds end at ``window.until``; holds are not clipped to the window otherwise.
    """
    h = holds_t
    kinds = {"pool_id": "int", "product_id": "int", "user": "text", "s": "time", "e": "time"}
    if not products:
        del kinds["product_id"]
    query = sa.select(
        h.c.pool_id,
        *([h.c.product_id] if products else []),
        h.c.user_name,
        h.c.granted_at,
        h.c.released_at,
    ).where(
        h.c.granted_at < window.db(window.end),
        sa.or_(h.c.released_at.is_(None), h.c.released_at > window.db(window.start)),
    )
    if with_sessions:
        query = query.add_columns(h.c.session_id, sessions_t.c.last_activity).join(
            sessions_t, sessions_t.c.id == h.c.session_id
        )
        kinds |= {"session_id": "int", "last_activity": "time"}
    frame = pd.DataFrame(_fetch(conn, query, kinds))
    frame["e"] = np.where(frame["e"] == NAT, window.until, frame["e"])
    return frame


def _load_denials(conn: Connection, lo: int, hi: int, window: _Window) -> pd.DataFrame:
    """Denials with ``lo <= at < hi``: ``pool_id``, ``user``, ``at`` (ns)."""
    d = denials_t
    query = sa.select(d.c.pool_id, d.c.user_name, d.c.at).where(
        d.c.pool_id.is_not(None), d.c.at >= window.db(lo), d.c.at < window.db(hi)
    )
    return pd.DataFrame(_fetch(conn, query, {"pool_id": "int", "user": "text", "at": "time"}))


def _pool_births(conn: Connection) -> dict[int, int]:
    """pool id -> when it was first observed (ns): created, or its first hold/denial if older."""

    def as_ns(value: datetime | str | None) -> int | None:
        return None if value is None else int(pd.Timestamp(value).value)

    births: dict[int, int] = {}
    for query in (
        sa.select(pools_t.c.id, pools_t.c.created_at),
        sa.select(holds_t.c.pool_id, sa.func.min(holds_t.c.granted_at)).group_by(holds_t.c.pool_id),
        sa.select(denials_t.c.pool_id, sa.func.min(denials_t.c.at))
        .where(denials_t.c.pool_id.is_not(None))
        .group_by(denials_t.c.pool_id),
    ):
        for pool_id, when in conn.execute(query).all():
            ns = as_ns(when)
            if ns is not None:
                births[pool_id] = min(births.get(pool_id, ns), ns)
    return births


# ------------------------------------------------------------------------ vectorised kernels


def _merge(key: Array, s: Array, e: Array) -> tuple[Array, Array, Array, Array, Array]:
    """Merge the overlapping intervals ``[s, e)`` of each key (e.g. one user on one pool).

    Intervals that overlap or touch join one *episode*. Returns ``order`` (the sort of the inputs
    by key, start), ``first`` (per sorted input: does it open an episode), and per episode its
    key, start and end. Sort + per-key running maximum of the ends: no Python loop.
    """
    if not len(s):
        empty = np.empty(0, dtype=np.int64)
        return empty, np.empty(0, dtype=bool), empty, empty, empty
    order = np.lexsort((s, key))
    k, ss, ee = key[order], s[order], e[order]
    reach = pd.Series(ee).groupby(k, sort=False).cummax().to_numpy()
    first = np.ones(len(k), dtype=bool)
    first[1:] = (k[1:] != k[:-1]) | (ss[1:] > reach[:-1])
    opens = np.flatnonzero(first)
    return order, first, k[opens], ss[opens], np.maximum.reduceat(ee, opens)


def _step(starts: Array, ends: Array) -> tuple[Array, Array]:
    """The count of intervals covering t, as a step function: times ``ut`` (sorted, unique)
    and ``level[i]``, the count on ``[ut[i], ut[i+1])``; the count is 0 before ``ut[0]``."""
    keep = starts < ends
    times = np.concatenate([starts[keep], ends[keep]])
    if not len(times):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    deltas = np.concatenate([np.ones(keep.sum(), np.int64), -np.ones(keep.sum(), np.int64)])
    order = np.argsort(times, kind="stable")
    times, deltas = times[order], deltas[order]
    bounds = np.flatnonzero(np.r_[True, times[1:] != times[:-1]])
    return times[bounds], np.cumsum(np.add.reduceat(deltas, bounds))


def _level_at(ut: Array, level: Array, x: Array) -> Array:
    """The step function's value at each instant of `x`."""
    index = np.searchsorted(ut, x, side="right") - 1
    if not len(ut):
        return np.zeros(len(x), dtype=np.int64)
    return np.where(index >= 0, level[np.maximum(index, 0)], 0)


def _bucket_max(ut: Array, level: Array, lo: Array, hi: Array) -> Array:
    """Exact maximum of the step function over each bucket ``[lo[k], hi[k])`` (sorted, disjoint):
    the level carried in at ``lo[k]`` and every level reached by a change inside the bucket."""
    out = _level_at(ut, level, lo)
    if len(lo) and len(ut):
        bucket = np.searchsorted(lo, ut, side="right") - 1
        inside = (bucket >= 0) & (ut < hi[np.maximum(bucket, 0)])
        np.maximum.at(out, bucket[inside], level[inside])
    return out


def _area(ut: Array, level: Array, x: Array) -> Array:
    """The integral of the step function from -inf to each instant of `x` (level x seconds)."""
    if not len(ut):
        return np.zeros(len(x), dtype=np.float64)
    steps = level[:-1] * (np.diff(ut) / SECOND_NS)
    cumulative = np.r_[0.0, np.cumsum(steps)]
    index = np.searchsorted(ut, x, side="right") - 1
    safe = np.maximum(index, 0)
    value = cumulative[safe] + level[safe] * ((x - ut[safe]) / SECOND_NS)
    return np.where(index >= 0, value, 0.0)


def _segments(ut: Array, level: Array, lo: int, hi: int) -> tuple[Array, Array, Array]:
    """The step function on ``[lo, hi)`` as constant pieces: starts, durations (ns), levels."""
    inner = ut[(ut > lo) & (ut < hi)]
    starts = np.r_[np.int64(lo), inner].astype(np.int64)
    durations = np.diff(np.r_[starts, np.int64(hi)])
    return starts, durations, _level_at(ut, level, starts)


def _weighted_quantile(levels: Array, durations: Array, q: float) -> float:
    """The smallest level not exceeded during at least a share `q` of the time."""
    order = np.argsort(levels, kind="stable")
    share = np.cumsum(durations[order]) / durations.sum()
    return float(levels[order][np.searchsorted(share, q * (1 - 1e-12))])


def _pool_steps(holds: pd.DataFrame, pools: tuple[Pool, ...]) -> dict[int, tuple[Array, Array]]:
    """pool id -> in-use step function (distinct users), from the loaded holds."""
    users = pd.factorize(holds["user"])[0].astype(np.int64)
    steps = {}
    for pool in pools:  # a loop per pool; everything per session is vectorised
        mask = (holds["pool_id"] == pool.id).to_numpy()
        s, e = holds["s"].to_numpy()[mask], holds["e"].to_numpy()[mask]
        keep = s < e
        _, _, _, starts, ends = _merge(users[mask][keep], s[keep], e[keep])
        steps[pool.id] = _step(starts, ends)
    return steps


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


def _buckets(window: _Window, freq: str | timedelta) -> tuple[Array, Array]:
    step = _duration_ns(freq, "freq")
    lo = np.arange(window.start, window.end, step, dtype=np.int64)
    return lo, np.minimum(lo + step, window.end)


# ----------------------------------------------------------------------------------- queries


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
    window = _window(start, end)
    lo, hi = _buckets(window, freq)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = _load_holds(conn, window, products=False)
    steps = _pool_steps(holds, catalog.pools)
    data = {pool_id: _bucket_max(ut, level, lo, hi) for pool_id, (ut, level) in steps.items()}
    return _bucket_frame(lo, data, catalog.pools)


@store_operation
def denials(
    engine: Engine, start: datetime, end: datetime, freq: str | timedelta = "1D"
) -> pd.DataFrame:
    """Recorded denials per pool and bucket (logins a pool could not serve: full, not named,
    expired). Same layout as :func:`concurrency`: index the bucket starts (UTC), columns a
    (``product``, ``license_type``) MultiIndex, values the number of denials with
    ``bucket <= at < bucket + freq`` (and ``at < end``)."""
    window = _window(start, end)
    lo, _ = _buckets(window, freq)
    step = _duration_ns(freq, "freq")
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        recorded = _load_denials(conn, window.start, window.end, window)
    bucket = (recorded["at"].to_numpy() - window.start) // step
    data = {
        pool.id: np.bincount(
            bucket[(recorded["pool_id"] == pool.id).to_numpy()], minlength=len(lo)
        ).astype(np.int64)
        for pool in catalog.pools
    }
    return _bucket_frame(lo, data, catalog.pools)


def _observed(window: _Window, births: Mapping[int, int], pool: Pool) -> tuple[int, int]:
    lo = max(window.start, births.get(pool.id, window.start))
    return lo, max(lo, window.until)


@store_operation
def peaks(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Per pool: seats owned, peak in use and when, time-weighted percentiles, time near full.

    Columns: ``product``, ``license_type``, ``seats`` (owned now), ``peak`` (highest in-use in
    the window), ``peak_at`` (first instant it was reached, UTC; NaT when the peak is 0),
    ``p95``/``p99`` (the smallest in-use count not exceeded during 95% / 99% of the pool's
    observed period), ``share_near_full`` (share of the observed period with in-use >= 90% of
    the seats), then ``kind`` and ``mean`` (time-weighted mean in use). The observed period is the
    window cut at now and at the pool's creation; a pool with none gets NaN percentiles/shares.
    """
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = _load_holds(conn, window, products=False)
        births = _pool_births(conn)
    steps = _pool_steps(holds, catalog.pools)
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
            starts, durations, levels = _segments(ut, level, lo, hi)
            top = int(levels.max())
            near = NEAR_FULL[1] * levels >= NEAR_FULL[0] * pool.seats
            row.update(
                peak=top,
                peak_at=_utc(starts[[int(np.argmax(levels))]])[0] if top else pd.NaT,
                p95=_weighted_quantile(levels, durations, 0.95),
                p99=_weighted_quantile(levels, durations, 0.99),
                share_near_full=float(durations[near].sum() / durations.sum()),
                mean=float((levels * durations).sum() / durations.sum()),
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else _PEAK_COLUMNS)
    frame["seats"] = frame["seats"].astype(np.int64)
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
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = _load_holds(conn, window, products=False)
        births = _pool_births(conn)
    steps = _pool_steps(holds, catalog.pools)
    parts = []
    for pool in catalog.pools:
        lo, hi = _observed(window, births, pool)
        if hi <= lo:
            continue
        edges = np.arange(lo - lo % HOUR_NS, hi, HOUR_NS, dtype=np.int64)
        b_lo, b_hi = np.maximum(edges, lo), np.minimum(edges + HOUR_NS, hi)
        ut, level = steps[pool.id]
        stamps = _utc(edges)
        parts.append(
            pd.DataFrame(
                {
                    "weekday": stamps.day_of_week,
                    "hour": stamps.hour,
                    "area": _area(ut, level, b_hi) - _area(ut, level, b_lo),
                    "seconds": (b_hi - b_lo) / SECOND_NS,
                    "peak": _bucket_max(ut, level, b_lo, b_hi),
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
    n = _count(n, "n", 0)
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = _load_holds(conn, window)
    columns = ["user", "product", "license_hours"]
    s = np.maximum(holds["s"].to_numpy(), window.start)
    e = np.minimum(holds["e"].to_numpy(), window.until)
    keep = s < e
    users, names = pd.factorize(holds["user"][keep])
    products = holds["product_id"].to_numpy()[keep]
    width = int(products.max(initial=0)) + 1
    key = users.astype(np.int64) * width + products
    _, _, episode_key, starts, ends = _merge(key, s[keep], e[keep])
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
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        holds = _load_holds(conn, window, with_sessions=True)
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


# ---------------------------------------------------------------------- replay and right-size


@dataclass(frozen=True)
class _Demand:
    """One pool's replayed demand, in arrival order (time, then user name)."""

    pool: Pool
    arrive: Array  # ns
    leave: Array  # ns
    user: Array  # user codes
    counted: Array  # bool: inside the window (else carried in, always admitted)
    load: Array  # most users the whole demand has at once in the request's busy period
    recorded_denials: int
    users: int
    width: int  # a power of two above every user code
    limit: Array  # per request: (arrival + 1) * width, in time units since the first arrival
    entry: Array  # per request: release * width + user
    memo: dict[int, int] = field(default_factory=dict)  # seats -> refused

    @property
    def requests(self) -> int:
        return int(self.counted.sum())

    @functools.cached_property
    def guess(self) -> Array:
        """Per request, the users of the other requests running when it arrives (-1: a reuse)."""
        return _arrival_guess(self.user, self.arrive, self.leave)

    def denied(self, seats: int) -> int:
        """Requests a pool of `seats` seats refuses, first come first served.

        One tight loop over the requests with a heap of seat releases: a user holding a seat
        (from an earlier admitted request still running) is admitted and may extend it; anyone
        else needs a free seat. Requests carried in from before the window are always admitted.
        Busy periods (between instants when the demand holds no seat at all) are independent,
        so those whose demand never exceeds `seats` are skipped: nobody is refused there.
        """
        if seats in self.memo:
            return self.memo[seats]
        contended = np.flatnonzero(self.load > seats)
        # heap entries are single integers, release * width + user: they order by release time
        # (then user), compare fast, and an entry released by `arrive` is one below its limit
        width = self.width
        mask = width - 1
        heap: list[int] = []
        holding: dict[int, int] = {}  # user -> their latest entry (when their seat is freed)
        pop, push = heapq.heappop, heapq.heappush
        refused = 0
        for limit, entry, user, counted in zip(
            self.limit[contended].tolist(),
            self.entry[contended].tolist(),
            self.user[contended].tolist(),
            self.counted[contended].tolist(),
            strict=True,
        ):
            while heap and heap[0] < limit:
                released = pop(heap)
                who = released & mask
                if holding.get(who) == released:
                    del holding[who]
            until = holding.get(user)
            if until is not None:
                if entry > until:
                    holding[user] = entry
                    push(heap, entry)
            elif len(holding) < seats or not counted:
                holding[user] = entry
                push(heap, entry)
            else:
                refused += 1
        self.memo[seats] = refused
        return refused

    def needed(self, max_denial_rate: float) -> int:
        """The smallest seat count whose replay refuses at most `max_denial_rate` of the
        requests (refusals fall as seats rise).

        A bracketing search over :meth:`denied` that needs a handful of replays, not a dozen.
        A model steers it: the vectorised replay in which refused requests keep their seats
        (``guess``) refuses ``model(seats)`` requests, cheap to count for every seat count, an
        upper bound of the real refusals and nearly proportional to them near the answer. The
        search starts where the model meets the target and rescales the model by the refusals
        measured. With two passes and no fail, it extends their secant to the left (it lands
        just short of the answer on the convex refusal curve); with two fails and no measured
        pass, it aims half as far again past their secant's crossing, for a pass near the
        answer; bracketed, it takes the chord's crossing, rounded down. Each step only chooses
        the next seat count inside the bracket, so the answer is the same whatever it picks.
        """
        allowed = float(np.floor(max_denial_rate * self.requests + 1e-9))
        ceiling = int(self.load.max(initial=0))  # refuses nobody
        ordered = np.sort(self.guess[self.counted])

        def model_meets(limit: float) -> int:  # smallest seats the scaled model lets pass
            if limit >= len(ordered):
                return 0
            return int(ordered[len(ordered) - 1 - int(limit)]) + 1

        def model(seats: int) -> int:
            return int(len(ordered) - np.searchsorted(ordered, seats, side="left"))

        low, high = -1, ceiling  # low refuses too many (or is -1), high passes
        candidate = model_meets(allowed)
        while high - low > 1:
            candidate = min(max(candidate, low + 1), high - 1)
            refused = self.denied(candidate)
            if refused <= allowed:
                high = candidate
            else:
                low = candidate
            memo = self.memo
            passing = sorted(s for s, r in memo.items() if r <= allowed and s >= high)
            failing = sorted((s for s, r in memo.items() if r > allowed and s <= low), reverse=True)
            if failing and passing:  # bracketed: the chord crosses right of the convex curve
                f_low, f_high = memo[low], memo[high]
                cross = low + (f_low - allowed) / max(f_low - f_high, 1) * (high - low)
                candidate = int(np.floor(cross))
            elif len(passing) >= 2 and memo[passing[0]] != memo[passing[1]]:
                # the secant through the two closest passes, extended left, stays under the
                # convex curve: it lands just short of the answer, on a failing seat count
                a, b = passing[0], passing[1]
                slope = (memo[a] - memo[b]) / (b - a)
                candidate = int(np.floor(a - (allowed - memo[a]) / slope)) - 1
            elif len(failing) >= 2 and memo[failing[0]] != memo[failing[1]]:
                # two fails and no measured pass: the secant of the fails lands short of the
                # answer (convexity), so aim half as far again past it, for a pass near it
                a, b = failing[1], failing[0]
                slope = (memo[a] - memo[b]) / (b - a)
                candidate = int(np.ceil(b + 1.5 * (memo[b] - allowed) / slope)) + 1
            else:
                scale = refused / model(candidate) if model(candidate) else 0.0
                candidate = model_meets(allowed / scale) if scale > 0 else (low + high) // 2
                if candidate in memo:
                    candidate = (low + high) // 2
        return high


def _demands(conn: Connection, window: _Window, catalog: Catalog) -> dict[int, _Demand]:
    """Every pool's requests in the window, replayed as described in :func:`replay`."""
    holds = _load_holds(conn, window, products=False)
    closed = holds[(holds["e"] < window.until) & (holds["s"] >= window.start)]
    length = closed["e"] - closed["s"]
    overall = float(length.median()) if len(closed) else FALLBACK_REQUEST_NS
    per_pool = length.groupby(closed["pool_id"]).median()
    # whole microseconds, as the store keeps them
    typical = {
        pool.id: max(int(per_pool.get(pool.id, overall)) // 1000 * 1000, 1000)
        for pool in catalog.pools
    }
    recorded = _load_denials(conn, window.start, window.end, window)
    # codes in name order, so that simultaneous requests are taken by user name
    codes = pd.factorize(
        pd.concat([holds["user"], recorded["user"]], ignore_index=True), sort=True
    )[0].astype(np.int64)
    hold_users, denial_users = codes[: len(holds)], codes[len(holds) :]
    demands = {}
    for pool in catalog.pools:
        in_holds = (holds["pool_id"] == pool.id).to_numpy()
        in_denials = (recorded["pool_id"] == pool.id).to_numpy()
        at = recorded["at"].to_numpy()[in_denials]
        s = np.r_[holds["s"].to_numpy()[in_holds], at]
        e = np.r_[holds["e"].to_numpy()[in_holds], at + typical[pool.id]]
        e = np.maximum(e, s + 1)  # a zero-length hold still takes its seat for an instant
        user = np.r_[hold_users[in_holds], denial_users[in_denials]]
        demands[pool.id] = _demand(pool, s, e, user, window.start, len(at))
    return demands


def _demand(pool: Pool, s: Array, e: Array, user: Array, start: int, recorded: int) -> _Demand:
    """A pool's requests ``[s, e)`` by user code (codes in name order) as a :class:`_Demand`;
    requests arriving before `start` are carried in (always admitted, not counted)."""
    arrival = np.lexsort((user, s))
    s, e, user = s[arrival], e[arrival], user[arrival]
    width, limit, entry = _encode(s, e, user)
    return _Demand(
        pool=pool,
        arrive=s,
        leave=e,
        user=user,
        counted=s >= start,
        load=_period_load(user, s, e),
        recorded_denials=recorded,
        users=len(np.unique(user[s >= start])),
        width=width,
        limit=limit,
        entry=entry,
    )


def _encode(s: Array, e: Array, user: Array) -> tuple[int, Array, Array]:
    """The replay's integer heap keys: ``(width, (arrival + 1) * width, release * width + user)``
    with times counted from the first arrival, in microseconds when every time allows it (the
    store keeps microseconds). Python integers when int64 would overflow."""
    width = 1 << max(int(user.max(initial=0)).bit_length(), 1)
    if not len(s):
        return width, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    base = int(s.min())
    unit = 1000 if not ((s - base) % 1000).any() and not ((e - base) % 1000).any() else 1
    arrive, leave = (s - base) // unit, (e - base) // unit
    if (int(leave.max()) + 2) * width >= 2**63:
        arrive, leave, user = arrive.astype(object), leave.astype(object), user.astype(object)
    return width, (arrive + 1) * width, leave * width + user


def _period_load(user: Array, s: Array, e: Array) -> Array:
    """Per request (in arrival order), the most distinct users the whole demand holds at once
    during its busy period: the stretch between two instants when it holds nothing."""
    _, _, _, starts, ends = _merge(user, s, e)
    ut, level = _step(starts, ends)
    if not len(ut):
        return np.zeros(len(s), dtype=np.int64)
    period = np.cumsum(np.r_[0, level[:-1] == 0])  # a new period after each return to zero
    peak = np.zeros(period[-1] + 1, dtype=np.int64)
    np.maximum.at(peak, period, level)
    return peak[period[np.searchsorted(ut, s, side="right") - 1]]


def _arrival_guess(user: Array, s: Array, e: Array) -> Array:
    """Per request (in arrival order), the users of the other requests still running when it
    arrives, if every request had been admitted; -1 for a user with a request running (a
    reuse). Refusing the requests with a guess >= seats is the replay in which a refusal keeps
    its seat: vectorised, and an upper bound of the first-come-first-served refusals."""
    order, first, ep_user, ep_start, ep_end = _merge(user, s, e)
    guess = np.full(len(s), -1, dtype=np.int64)
    if len(ep_start):
        arrival = np.lexsort((ep_user, ep_start))
        rank = np.empty(len(arrival), dtype=np.int64)
        rank[arrival] = np.arange(len(arrival))
        guess[order[first]] = rank - np.searchsorted(np.sort(ep_end), ep_start, side="right")
    return guess


def _seat_overrides(catalog: Catalog, seats: Mapping[tuple[str, str], int]) -> dict[int, int]:
    if not isinstance(seats, Mapping):
        raise InvalidInput("seats must map (product, license type) pairs to seat counts")
    chosen = {pool.id: pool.seats for pool in catalog.pools}
    for key, count in seats.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise InvalidInput(f"seats keys are (product, license type) pairs, not {key!r}")
        product, license_type = key
        catalog.type_id(product, license_type)  # UnknownProduct / UnknownLicenseType
        pool = catalog.pool(product, license_type)
        if pool is None:
            raise UnknownLicenseType(f"product {product!r} has no {license_type!r} pool")
        chosen[pool.id] = _count(count, f"seats of {pool_label(product, license_type)}", 0)
    return chosen


@store_operation
def replay(
    engine: Engine,
    start: datetime,
    end: datetime,
    seats: Mapping[tuple[str, str], int],
) -> pd.DataFrame:
    """What-if: the denials the recorded demand of the window would meet with other seat counts.

    `seats` maps ``(product, license_type)`` to a seat count; pools left out keep their seats.

    The demand of a pool: every hold granted in the window (held from grant to release, or to
    ``min(end, now)`` while open) and every denial recorded in the window, replayed as a request
    that would have held the seat for the pool's *typical session length* (the median length of
    its holds granted and released in the window; else the median over all pools; else one
    hour). Requests are replayed first come, first served (ties by user name) with the rules of
    login: a user who already holds a seat of the pool reuses it (and keeps it until the later
    of the two releases); anyone else gets a seat if one is free, else is refused, and a refused
    request takes no seat. Holds granted before the window and still running keep their seats.
    Every pool is replayed as a concurrent pool: for a named pool, read the seats as "seats if
    this pool were concurrent" (``users`` is how many named seats its demand would need).

    Columns: ``product``, ``license_type``, ``seats`` (replayed), ``requests``, ``denied``,
    ``denial_rate`` (denied / requests; NaN without requests), ``recorded_denials`` (denials the
    store recorded in the window), ``users`` (distinct users with requests).
    """
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        chosen = _seat_overrides(catalog, seats)
        demands = _demands(conn, window, catalog)
    rows = []
    for pool in catalog.pools:
        demand = demands[pool.id]
        denied = demand.denied(chosen[pool.id])
        rows.append(
            {
                "product": pool.product,
                "license_type": pool.license_type,
                "seats": chosen[pool.id],
                "requests": demand.requests,
                "denied": denied,
                "denial_rate": denied / demand.requests if demand.requests else np.nan,
                "recorded_denials": demand.recorded_denials,
                "users": demand.users,
            }
        )
    return _typed(
        pd.DataFrame(rows, columns=_REPLAY_COLUMNS),
        ints=("seats", "requests", "denied", "recorded_denials", "users"),
        floats=("denial_rate",),
    )


_REPLAY_COLUMNS = [
    "product",
    "license_type",
    "seats",
    "requests",
    "denied",
    "denial_rate",
    "recorded_denials",
    "users",
]


def _typed(frame: pd.DataFrame, ints: tuple[str, ...], floats: tuple[str, ...]) -> pd.DataFrame:
    for column in ints:
        frame[column] = frame[column].astype(np.int64)
    for column in floats:
        frame[column] = frame[column].astype(np.float64)
    return frame


@store_operation
def right_size(
    engine: Engine, start: datetime, end: datetime, max_denial_rate: float = 0.01
) -> pd.DataFrame:
    """Per pool, the smallest seat count whose :func:`replay` of the window refuses at most
    `max_denial_rate` of the requests, next to the seats owned.

    Columns: ``product``, ``license_type``, ``seats`` (owned), ``needed``, then ``kind``,
    ``change`` (needed - seats), ``requests``, ``denial_rate`` (replayed at the owned seats),
    ``needed_denial_rate`` (replayed at ``needed``), ``recorded_denials`` and ``users``. A pool
    without requests needs 0 seats. Found by a search over the replay (see ``_Demand.needed``),
    between 0 and the most users the demand ever had at once (which refuses nobody).
    """
    if (
        isinstance(max_denial_rate, bool)
        or not isinstance(max_denial_rate, int | float)
        or not 0 <= max_denial_rate <= 1
    ):
        raise InvalidInput(f"max_denial_rate must be between 0 and 1, not {max_denial_rate!r}")
    window = _window(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        demands = _demands(conn, window, catalog)
    rows = []
    for pool in catalog.pools:
        demand = demands[pool.id]
        needed = demand.needed(max_denial_rate)
        requests = demand.requests
        rows.append(
            {
                "product": pool.product,
                "license_type": pool.license_type,
                "seats": pool.seats,
                "needed": needed,
                "kind": pool.kind,
                "change": needed - pool.seats,
                "requests": requests,
                "denial_rate": demand.denied(pool.seats) / requests if requests else np.nan,
                "needed_denial_rate": demand.denied(needed) / requests if requests else np.nan,
                "recorded_denials": demand.recorded_denials,
                "users": demand.users,
            }
        )
    columns = [
        "product",
        "license_type",
        "seats",
        "needed",
        "kind",
        "change",
        "requests",
        "denial_rate",
        "needed_denial_rate",
        "recorded_denials",
        "users",
    ]
    return _typed(
        pd.DataFrame(rows, columns=columns),
        ints=("seats", "needed", "change", "requests", "recorded_denials", "users"),
        floats=("denial_rate", "needed_denial_rate"),
    )
