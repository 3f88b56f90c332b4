"""The large store's sessions, generated as numpy arrays under the seat rules (no store needed).

Sessions are sampled as arrays (:func:`simulate`); the seat rules are then enforced on them:

* a user named on a product's Named User pool holds that pool; nobody else ever does;
* everyone else asks the product's Concurrent User pool. A user's overlapping sessions share one
  seat, so they are merged into one *occupancy interval* per user and pool (by
  :func:`licusage.analytics.intervals.merge`), and the intervals are admitted first come, first
  served (:func:`admit`): an interval is admitted when fewer than ``seats`` admitted intervals
  are open at its start. Intervals that start while *all* requested intervals fit are admitted
  without looking further (vectorised); only those starting in an overloaded stretch are
  decided one by one. The sessions of a refused interval record a ``pool_full`` denial for that
  product, and a session refused every license it asked for is not created, as
  :func:`licusage.sessions.login` does.

The mix of products, pools and job roles is :mod:`licusage.demo`'s large-store mix
(``LARGE_SEAT_SHARES``, ``LARGE_JOB_ROLES``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import catalog
from ..analytics import intervals
from ..demo import LARGE_JOB_ROLES, LARGE_SEAT_SHARES, pool_seats
from ..sessions import IDLE_TIMEOUT, USER_LOGOUT

US = 1_000_000  # the generator's clock ticks in microseconds since the epoch
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR
OPEN = np.iinfo(np.int64).max  # the end of a session that is still open
PRODUCTS = catalog.DEFAULT_PRODUCTS
NAMED_USER, CONCURRENT_USER = catalog.NAMED_USER, catalog.CONCURRENT_USER
REASONS = (USER_LOGOUT, IDLE_TIMEOUT)
MAX_ATTEMPTS = 4  # samplings tried to reach the requested session counts
VDI_HOSTS = 40  # shared virtual desktops, besides each user's workstation
SEAT_SHARES = LARGE_SEAT_SHARES
JOB_ROLES = LARGE_JOB_ROLES

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Sessions:
    """Candidate sessions as parallel arrays (times in microseconds)."""

    user: IntArray
    host: IntArray  # index into host_names(users)
    start: IntArray
    last: IntArray
    end: IntArray  # OPEN while active
    reason: IntArray  # index into REASONS; -1 while active
    uses: BoolArray  # (sessions, products): licenses the login asks for


@dataclass
class Plan:
    """What the seat rules made of the candidates."""

    sessions: Sessions
    granted: npt.NDArray[np.int8]  # (sessions, products): 0 none, 1 named, 2 concurrent
    denied: BoolArray  # (sessions, products): asked for a concurrent seat and refused

    @property
    def created(self) -> BoolArray:
        """Per candidate: did the login get a license (is the session created)?"""
        return np.asarray((self.granted > 0).any(axis=1))


def _role_table() -> tuple[npt.NDArray[np.float64], BoolArray, IntArray]:
    """Role shares, role x product usage, and each role's first product (its fallback)."""
    shares = np.array([share for share, _ in JOB_ROLES.values()])
    uses = np.array([[p in products for p in PRODUCTS] for _, products in JOB_ROLES.values()])
    first = np.array([PRODUCTS.index(products[0]) for _, products in JOB_ROLES.values()])
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
) -> Sessions:
    _, role_uses, role_first = _role_table()
    user, start, last, end, reason = _sample(rng, history, active, weights, now_us, days)
    count = len(user)
    uses = role_uses[role[user]] & (rng.random((count, len(PRODUCTS))) < 0.93)
    nothing = ~uses.any(axis=1)
    uses[np.flatnonzero(nothing), role_first[role[user[nothing]]]] = True
    on_vdi = rng.random(count) < 0.15
    host = np.where(on_vdi, len(weights) + rng.integers(0, VDI_HOSTS, count), user)
    return Sessions(user, host, start, last, end, reason, uses)


def admit(start: IntArray, end: IntArray, user: IntArray, seats: int) -> BoolArray:
    """First come, first served admission to a concurrent pool of `seats` seats.

    `start`/`end` (``OPEN`` for no end) are requests by `user`; one user's overlapping requests
    share a seat and are admitted or refused together. Returns which requests were admitted; at
    no instant do the admitted requests come from more than `seats` distinct users.
    """
    count = len(start)
    if count == 0:
        return np.zeros(0, dtype=bool)
    # each user's overlapping requests as one occupancy interval ("group"); a request starting
    # where the user's last one ends asks again (at one instant, releases come before grants)
    order, new, _, g_start, g_end = intervals.merge(user, start, end, touching=False)
    group = np.cumsum(new) - 1
    groups = len(g_start)

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


def _apply_rules(sessions: Sessions, named: BoolArray, concurrent_seats: dict[str, int]) -> Plan:
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
    return Plan(sessions, granted, denied)


def _take(plan: Plan, keep: BoolArray) -> Plan:
    s = plan.sessions
    return Plan(
        Sessions(
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


def _trim(plan: Plan, history: int, active: int) -> tuple[Plan, bool]:
    """Keep the candidate logins (in their random order) up to the `history`-th created ended
    session and the `active`-th created open one; False if there were not enough."""
    created = plan.created
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


def simulate(
    users: int, active: int, history: int, days: int, seed: int, now_us: int
) -> tuple[Plan, BoolArray, dict[tuple[str, str], int]]:
    """The sessions of a large store: `history` ended and `active` open ones (fewer only when
    the pools refuse too many logins) of `users` users over `days` days up to `now_us`.

    Returns the plan, who is named on each product's Named User pool ((users, products)) and
    the seats of each pool. Deterministic for the same arguments.
    """
    rng = np.random.default_rng(seed)
    shares, role_uses, _ = _role_table()
    role = rng.choice(len(shares), size=users, p=shares)
    weights = rng.lognormal(0.0, 0.5, users)
    weights /= weights.sum()
    seats = pool_seats(users, SEAT_SHARES)
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
        created = plan.created
        is_active = plan.sessions.end == OPEN
        factor_h *= 1.05 * want_h / max(int(created[~is_active].sum()), 1)
        factor_a *= 1.05 * want_a / max(int(created[is_active].sum()), 1)
    return trimmed, named, seats


def host_names(users: int) -> list[str]:
    """Each user's workstation, then the shared virtual desktops."""
    return [f"ws-{i:05d}" for i in range(users)] + [f"vdi-{i:02d}" for i in range(VDI_HOSTS)]
