"""A deterministic demo store: the seed's four products, realistic users and session history.

The generator simulates the suite in memory with the same seat rules as
:func:`licusage.sessions.login` (named users must be assigned; a concurrent pool admits at most
``seats`` distinct users; a user's second session reuses their seat), then bulk-inserts the
result. Logins the rules refuse become denials.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tqdm.auto import tqdm

from . import catalog, clock
from .db import store_operation, write
from .errors import InvalidInput
from .models import assignments_t, denials_t, holds_t, sessions_t
from .sessions import POOL_FULL, user_key

CM, RO, AA, EM = catalog.DEFAULT_PRODUCTS
NAMED_USER, CONCURRENT_USER = catalog.NAMED_USER, catalog.CONCURRENT_USER

# seats per pool as a share of the user count
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

FIRST = (
    "alice bob carol dave erin frank grace heidi ivan judy karl laura mallory niaj olivia peggy "
    "quentin rupert sybil trent ursula victor wendy xavier yvonne zoe amir bea chen dana eli fatima "
    "goran hana igor jun kemal lena mateo nora omar priya raj sofia tomas uma vera wei yusuf zara"
).split()
LAST = (
    "smith jones garcia muller rossi novak kim nguyen silva cohen patel ivanova khan larsen dubois "
    "costa yamada okafor haddad murphy schmidt fischer moreau tanaka wong berg lind quinn ortiz"
).split()

BATCH = 10_000


@dataclass
class DemoSummary:
    users: int
    sessions: int
    active_sessions: int
    holds: int
    denials: int
    pools: int
    now: datetime


@dataclass
class _Plan:
    user: str
    host: str
    start: datetime
    last_activity: datetime
    end: datetime | None  # None: still open at `now`
    reason: str | None
    products: tuple[str, ...]
    granted: dict[str, str] = field(default_factory=dict)


def user_names(count: int) -> list[str]:
    """`count` distinct, readable user names (``alice.smith``, ``bob.jones2``, ...)."""
    names = []
    for index in range(count):
        first = FIRST[index % len(FIRST)]
        last = LAST[(index // len(FIRST)) % len(LAST)]
        round_ = index // (len(FIRST) * len(LAST))
        names.append(f"{first}.{last}" + (str(round_ + 1) if round_ else ""))
    return names


def _seat_count(users: int, share: float) -> int:
    return max(1, round(users * share))


def _assign_roles(names: list[str], rng: random.Random) -> dict[str, str]:
    roles = list(ROLES)
    weights = [ROLES[r][0] for r in roles]
    return {name: rng.choices(roles, weights)[0] for name in names}


def _named_users(
    names: list[str], roles: dict[str, str], seats: dict[tuple[str, str], int], rng: random.Random
) -> dict[str, set[str]]:
    """product -> users assigned to its named pool (heaviest users of the product first)."""
    named: dict[str, set[str]] = {}
    for (product, license_type), count in seats.items():
        if license_type != NAMED_USER:
            continue
        candidates = [n for n in names if product in ROLES[roles[n]][1]]
        rng.shuffle(candidates)
        named[product] = set(candidates[:count])
    return named


def _plan_day(
    user: str,
    host: str,
    day: datetime,
    products: tuple[str, ...],
    rng: random.Random,
    now: datetime,
) -> Iterator[_Plan]:
    """One user's sessions on one day, following a working-hours pattern."""
    weekend = day.weekday() >= 5
    if (weekend and rng.random() > 0.05) or rng.random() < 0.08:
        return
    start = day + timedelta(hours=min(max(rng.gauss(8.5, 0.9), 6.0), 12.0))
    finish = start + timedelta(hours=max(rng.gauss(8.0, 1.2), 2.0))
    count = rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]
    length = (finish - start) / count
    for index in range(count):
        begin = start + length * index + timedelta(minutes=rng.uniform(0, 20) if index else 0)
        stop = start + length * (index + 1) - timedelta(minutes=rng.uniform(0, 15))
        if begin >= now:
            return
        used = tuple(p for p in products if rng.random() < 0.93) or products[:1]
        forgotten = rng.random() < 0.01
        if stop > now and not forgotten:
            # working right now: open, active within the last minutes
            last = max(begin, now - timedelta(minutes=rng.expovariate(1 / 6)))
            yield _Plan(user, host, begin, last, None, None, used)
        elif forgotten:
            # left open: reaped by the site's idle policy after 8 h, unless that is still ahead
            last = min(stop, now - timedelta(minutes=5))
            reaped = last + timedelta(hours=8)
            if reaped <= now:
                yield _Plan(user, host, begin, last, reaped, "idle_timeout", used)
            else:
                yield _Plan(user, host, begin, last, None, None, used)
        else:
            yield _Plan(user, host, begin, stop, stop, "user_logout", used)


def _simulate(
    plans: list[_Plan],
    seats: dict[tuple[str, str], int],
    named: dict[str, set[str]],
) -> list[tuple[datetime, str, str, str, str, str]]:
    """Apply the seat rules in time order; fill each plan's `granted`; return the denials
    (at, user, host, product, license type, reason)."""
    holders: dict[str, Counter[str]] = {product: Counter() for product in catalog.DEFAULT_PRODUCTS}
    releases: list[tuple[datetime, int]] = []
    denials = []
    for index, plan in enumerate(plans):
        while releases and releases[0][0] <= plan.start:
            _, ended = heapq.heappop(releases)
            for product, license_type in plans[ended].granted.items():
                if license_type == CONCURRENT_USER:
                    holders[product][plans[ended].user] -= 1
                    if not holders[product][plans[ended].user]:
                        del holders[product][plans[ended].user]
        for product in plan.products:
            if plan.user in named.get(product, ()):
                plan.granted[product] = NAMED_USER
                continue
            pool = holders[product]
            if plan.user in pool or len(pool) < seats[(product, CONCURRENT_USER)]:
                pool[plan.user] += 1
                plan.granted[product] = CONCURRENT_USER
            else:
                denials.append(
                    (plan.start, plan.user, plan.host, product, CONCURRENT_USER, POOL_FULL)
                )
        if plan.granted and plan.end is not None:
            heapq.heappush(releases, (plan.end, index))
    return denials


def _batches(rows: list[dict], label: str, progress: bool) -> Iterator[list[dict]]:
    for start in tqdm(
        range(0, len(rows), BATCH), desc=label, unit="batch", disable=not progress, leave=False
    ):
        yield rows[start : start + BATCH]


@store_operation
def generate(
    engine: Engine,
    users: int = 200,
    days: int = 14,
    seed: int = 0,
    now: datetime | None = None,
    progress: bool = False,
) -> DemoSummary:
    """Fill an empty store with `days` of history of `users` users, ending at `now`.

    The same `users`, `days`, `seed` and `now` always give the same store. Raises
    :class:`~licusage.errors.InvalidInput` if the store already holds sessions.
    """
    for name, value, low in (("users", users, 1), ("days", days, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInput(f"{name} must be a whole number >= {low}, not {value!r}")
    now = clock.to_db(now or clock.now())
    assert now is not None
    with engine.connect() as conn:
        existing = conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one()
    if existing:
        raise InvalidInput(
            f"the store already holds {existing} sessions; demo data goes only into an empty "
            "store (choose another database)"
        )
    rng = random.Random(seed)
    names = user_names(users)
    roles = _assign_roles(names, rng)
    seats = {key: _seat_count(users, share) for key, share in SEAT_SHARES.items()}
    named = _named_users(names, roles, seats, rng)
    hosts = {name: f"ws-{index:05d}" for index, name in enumerate(names)}

    plans: list[_Plan] = []
    first_day = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    day_iter = [first_day + timedelta(days=d) for d in range(days + 1)]
    for day in tqdm(
        day_iter, desc="simulating days", unit="day", disable=not progress, leave=False
    ):
        for name in names:
            host = hosts[name] if rng.random() < 0.85 else f"vdi-{rng.randrange(40):02d}"
            plans.extend(_plan_day(name, host, day, ROLES[roles[name]][1], rng, now))
    plans = [p for p in plans if p.start >= now - timedelta(days=days)]
    plans.sort(key=lambda p: (p.start, p.user))
    denials = _simulate(plans, seats, named)

    for (product, license_type), count in seats.items():
        catalog.add_pool(engine, product, license_type, count)
    cat = catalog.read_catalog(engine)
    _write(engine, cat, plans, denials, named, now, progress)
    kept = [p for p in plans if p.granted]
    return DemoSummary(
        users=users,
        sessions=len(kept),
        active_sessions=sum(1 for p in kept if p.end is None),
        holds=sum(len(p.granted) for p in kept),
        denials=len(denials),
        pools=len(seats),
        now=now,
    )


def _write(
    engine: Engine,
    cat: catalog.Catalog,
    plans: list[_Plan],
    denials: list[tuple[datetime, str, str, str, str, str]],
    named: dict[str, set[str]],
    now: datetime,
    progress: bool,
) -> None:
    with write(engine) as conn:
        next_id = (conn.execute(sa.select(sa.func.max(sessions_t.c.id))).scalar() or 0) + 1
        session_rows, hold_rows = [], []
        for plan in plans:
            if not plan.granted:
                continue
            session_id = next_id
            next_id += 1
            session_rows.append(
                {
                    "id": session_id,
                    "user_name": plan.user,
                    "user_key": user_key(plan.user),
                    "host": plan.host,
                    "started_at": plan.start,
                    "last_activity": plan.last_activity,
                    "ended_at": plan.end,
                    "end_reason": plan.reason,
                    "ended_by": None
                    if plan.end is None
                    else (plan.user if plan.reason == "user_logout" else "policy"),
                }
            )
            for product, license_type in plan.granted.items():
                pool = cat.pool(product, license_type)
                assert pool is not None
                hold_rows.append(
                    {
                        "session_id": session_id,
                        "product_id": pool.product_id,
                        "license_type_id": pool.license_type_id,
                        "pool_id": pool.id,
                        "user_name": user_key(plan.user),  # holds keep the identity
                        "granted_at": plan.start,
                        "released_at": plan.end,
                    }
                )
        denial_rows = []
        for at, user, host, product, license_type, reason in denials:
            pool = cat.pool(product, license_type)
            assert pool is not None
            denial_rows.append(
                {
                    "at": at,
                    "user_name": user_key(user),
                    "host": host,
                    "product_id": pool.product_id,
                    "license_type_id": pool.license_type_id,
                    "pool_id": pool.id,
                    "reason": reason,
                }
            )
        named_pool_ids = {p.product: p.id for p in cat.pools if p.license_type == NAMED_USER}
        assignment_rows = [
            {
                "pool_id": named_pool_ids[product],
                "user_name": user_key(user),
                "assigned_at": now - timedelta(days=400),
            }
            for product, users_ in named.items()
            for user in sorted(users_)
        ]
        for table, rows, label in (
            (assignments_t, assignment_rows, "named users"),
            (sessions_t, session_rows, "sessions"),
            (holds_t, hold_rows, "licenses"),
            (denials_t, denial_rows, "denials"),
        ):
            for batch in _batches(rows, f"writing {label}", progress):
                conn.execute(sa.insert(table), batch)
