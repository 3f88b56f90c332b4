"""Replay and right-sizing: the recorded demand of a window replayed first come, first served
against other seat counts, and the smallest seat count that meets a denial target."""

from __future__ import annotations

import functools
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from ..catalog import Catalog, Pool, read_catalog
from ..db import store_operation
from ..errors import InvalidInput, UnknownLicenseType
from ..models import PER_CHECKOUT
from . import intervals, loading
from .intervals import HOUR_NS, Array

# typical length of a replayed denied request when the window has no finished hold to learn from
FALLBACK_REQUEST_NS = HOUR_NS


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


def _demands(conn: Connection, window: loading.Window, catalog: Catalog) -> dict[int, _Demand]:
    """Every pool's requests in the window, replayed as described in :func:`replay`."""
    holds = loading.load_holds(conn, window, products=False)
    closed = holds[(holds["e"] < window.until) & (holds["s"] >= window.start)]
    length = closed["e"] - closed["s"]
    overall = float(length.median()) if len(closed) else FALLBACK_REQUEST_NS
    per_pool = length.groupby(closed["pool_id"]).median()
    # whole microseconds, as the store keeps them
    typical = {
        pool.id: max(int(per_pool.get(pool.id, overall)) // 1000 * 1000, 1000)
        for pool in catalog.pools
    }
    recorded = loading.load_denials(conn, window.start, window.end, window)
    # codes in name order, so that simultaneous requests are taken by user name
    codes = pd.factorize(
        pd.concat([holds["user"], recorded["user"]], ignore_index=True), sort=True
    )[0].astype(np.int64)
    hold_users, denial_users = codes[: len(holds)], codes[len(holds) :]
    unique_code = int(codes.max()) + 1 if len(codes) else 0
    demands = {}
    for pool in catalog.pools:
        in_holds = (holds["pool_id"] == pool.id).to_numpy()
        in_denials = (recorded["pool_id"] == pool.id).to_numpy()
        at = recorded["at"].to_numpy()[in_denials]
        hold_s, hold_e = holds["s"].to_numpy()[in_holds], holds["e"].to_numpy()[in_holds]
        users_of = hold_users[in_holds]
        # each license is a request of its own: of a pool counted per checkout, of a reservation
        each = holds["reserved"].to_numpy(dtype=bool)[in_holds] | (pool.counting == PER_CHECKOUT)
        if each.any():
            count = holds["licenses"].to_numpy()[in_holds][each]
            single_s, single_e = np.repeat(hold_s[each], count), np.repeat(hold_e[each], count)
            hold_s, hold_e = np.r_[hold_s[~each], single_s], np.r_[hold_e[~each], single_e]
            codes_of = unique_code + np.arange(len(single_s), dtype=np.int64)
            users_of = np.r_[users_of[~each], codes_of]
        s = np.r_[hold_s, at]
        e = np.r_[hold_e, at + typical[pool.id]]
        e = np.maximum(e, s + 1)  # a zero-length hold still takes its seat for an instant
        user = np.r_[users_of, denial_users[in_denials]]
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
    _, _, _, starts, ends = intervals.merge(user, s, e)
    ut, level = intervals.step(starts, ends)
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
    order, first, ep_user, ep_start, ep_end = intervals.merge(user, s, e)
    guess = np.full(len(s), -1, dtype=np.int64)
    if len(ep_start):
        arrival = np.lexsort((ep_user, ep_start))
        rank = np.empty(len(arrival), dtype=np.int64)
        rank[arrival] = np.arange(len(arrival))
        guess[order[first]] = rank - np.searchsorted(np.sort(ep_end), ep_start, side="right")
    return guess


def _seat_overrides(
    catalog: Catalog, seats: Mapping[tuple[str, str], int]
) -> dict[int, int | None]:
    if not isinstance(seats, Mapping):
        raise InvalidInput("seats must map (product, license type) pairs to seat counts")
    chosen: dict[int, int | None] = {pool.id: pool.seats for pool in catalog.pools}
    for key, count in seats.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise InvalidInput(f"seats keys are (product, license type) pairs, not {key!r}")
        product, license_type = key
        catalog.type_id(product, license_type)  # UnknownProduct / UnknownLicenseType
        pool = catalog.pool(product, license_type)
        if pool is None:
            raise UnknownLicenseType(f"product {product!r} has no {license_type!r} pool")
        chosen[pool.id] = loading.whole_number(
            count, f"seats of {loading.pool_label(product, license_type)}", 0
        )
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
    window = loading.window_of(start, end)
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        chosen = _seat_overrides(catalog, seats)
        demands = _demands(conn, window, catalog)
    rows = []
    for pool in catalog.pools:
        demand = demands[pool.id]
        seat_count = chosen[pool.id]
        denied = None if seat_count is None else demand.denied(seat_count)
        rows.append(
            {
                "product": pool.product,
                "license_type": pool.license_type,
                "seats": seat_count,
                "requests": demand.requests,
                "denied": denied,
                "denial_rate": denied / demand.requests
                if demand.requests and denied is not None
                else np.nan,
                "recorded_denials": demand.recorded_denials,
                "users": demand.users,
            }
        )
    return _typed(
        pd.DataFrame(rows, columns=_REPLAY_COLUMNS),
        ints=("requests", "recorded_denials", "users"),
        floats=("denial_rate",),
        nullable=("seats", "denied"),
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


def _typed(
    frame: pd.DataFrame,
    ints: tuple[str, ...],
    floats: tuple[str, ...],
    nullable: tuple[str, ...] = (),
) -> pd.DataFrame:
    for column in nullable:  # whole numbers that may be unknown (a server's seats)
        frame[column] = frame[column].astype("Int64")
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
    window = loading.window_of(start, end)
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
                "change": None if pool.seats is None else needed - pool.seats,
                "requests": requests,
                "denial_rate": demand.denied(pool.seats) / requests
                if requests and pool.seats is not None
                else np.nan,
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
        ints=("needed", "requests", "recorded_denials", "users"),
        floats=("denial_rate", "needed_denial_rate"),
        nullable=("seats", "change"),
    )
