"""Interval arithmetic on int64 arrays, vectorised: merging the intervals of each key, and
step functions of how many intervals cover an instant (level at, maximum per bucket, area,
pieces, time-weighted quantiles). Shared by the analytics and the bulk generator."""

from __future__ import annotations

import numpy as np
import pandas as pd

Array = np.ndarray

HOUR_NS = 3_600_000_000_000
SECOND_NS = 1_000_000_000


def merge(
    key: Array, s: Array, e: Array, *, touching: bool = True
) -> tuple[Array, Array, Array, Array, Array]:
    """Merge the overlapping intervals ``[s, e)`` of each key (e.g. one user on one pool).

    Intervals that overlap join one *episode*; so do intervals that touch (one starts where
    another ends), unless `touching` is False (then the seat is given back and asked for again
    at that instant, as the bulk generator's admission wants). Returns ``order`` (the sort of
    the inputs by key, start), ``first`` (per sorted input: does it open an episode), and per
    episode its key, start and end. Sort + per-key running maximum of the ends: no Python loop.
    """
    if not len(s):
        empty = np.empty(0, dtype=np.int64)
        return empty, np.empty(0, dtype=bool), empty, empty, empty
    order = np.lexsort((s, key))
    k, ss, ee = key[order], s[order], e[order]
    reach = pd.Series(ee).groupby(k, sort=False).cummax().to_numpy()
    first = np.ones(len(k), dtype=bool)
    later = ss[1:] > reach[:-1] if touching else ss[1:] >= reach[:-1]
    first[1:] = (k[1:] != k[:-1]) | later
    opens = np.flatnonzero(first)
    return order, first, k[opens], ss[opens], np.maximum.reduceat(ee, opens)


def step(starts: Array, ends: Array) -> tuple[Array, Array]:
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


def union_sorted(a: Array, b: Array) -> Array:
    """``np.union1d(a, b)`` for `a` sorted and unique (a step function's times), by a merge
    sort: numpy's hash-based unique takes seconds for millions of values."""
    if not len(b):
        return a
    merged = np.sort(np.concatenate([a, b]), kind="stable")
    return merged[np.r_[True, merged[1:] != merged[:-1]]]


def level_at(ut: Array, level: Array, x: Array) -> Array:
    """The step function's value at each instant of `x`."""
    index = np.searchsorted(ut, x, side="right") - 1
    if not len(ut):
        return np.zeros(len(x), dtype=np.int64)
    return np.where(index >= 0, level[np.maximum(index, 0)], 0)


def bucket_max(ut: Array, level: Array, lo: Array, hi: Array) -> Array:
    """Exact maximum of the step function over each bucket ``[lo[k], hi[k])`` (sorted, disjoint):
    the level carried in at ``lo[k]`` and every level reached by a change inside the bucket."""
    out = level_at(ut, level, lo)
    if len(lo) and len(ut):
        bucket = np.searchsorted(lo, ut, side="right") - 1
        inside = (bucket >= 0) & (ut < hi[np.maximum(bucket, 0)])
        np.maximum.at(out, bucket[inside], level[inside])
    return out


def area(ut: Array, level: Array, x: Array) -> Array:
    """The integral of the step function from -inf to each instant of `x` (level x seconds)."""
    if not len(ut):
        return np.zeros(len(x), dtype=np.float64)
    steps = level[:-1] * (np.diff(ut) / SECOND_NS)
    cumulative = np.r_[0.0, np.cumsum(steps)]
    index = np.searchsorted(ut, x, side="right") - 1
    safe = np.maximum(index, 0)
    value = cumulative[safe] + level[safe] * ((x - ut[safe]) / SECOND_NS)
    return np.where(index >= 0, value, 0.0)


def segments(ut: Array, level: Array, lo: int, hi: int) -> tuple[Array, Array, Array]:
    """The step function on ``[lo, hi)`` as constant pieces: starts, durations (ns), levels."""
    inner = ut[(ut > lo) & (ut < hi)]
    starts = np.r_[np.int64(lo), inner].astype(np.int64)
    durations = np.diff(np.r_[starts, np.int64(hi)])
    return starts, durations, level_at(ut, level, starts)


def weighted_quantile(levels: Array, durations: Array, q: float) -> float:
    """The smallest level not exceeded during at least a share `q` of the time."""
    order = np.argsort(levels, kind="stable")
    share = np.cumsum(durations[order]) / durations.sum()
    return float(levels[order][np.searchsorted(share, q * (1 - 1e-12))])
