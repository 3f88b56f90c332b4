"""A deterministic demo store: a customer-service centre using the seed's four products.

The suite the seed describes (case management, agent assist, e-mail management) runs a contact
centre, so the demo models one: agents in three regions (APAC, EMEA, Americas) work early, day
and late shifts in their own time zone, so the centre is staffed at every hour ("follow the
sun"); supervisors, analysts and the back office work office hours on weekdays. Weekends and
public holidays (1 January, 25 December) are staffed thinner: each agent works one weekend day
of two. A 200-user demo therefore has live sessions at any hour of any day (at least 20; most
on weekday afternoons UTC, when EMEA and the Americas overlap), some of them idle (a break, a
session left open until the idle policy ends it) and some logins denied when pools run full.

The generator simulates the suite in memory with the same seat rules as
:func:`licusage.sessions.login` (named users must be assigned; a concurrent pool admits at most
``seats`` distinct users; a user's second session reuses their seat), then bulk-inserts the
result. Logins the rules refuse become denials. The same ``users``, ``days``, ``seed`` and
``now`` always give the same store.
"""

from __future__ import annotations

import atexit
import heapq
import json
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tqdm import tqdm  # the plain bar: shown only on a terminal (the CLI)

from . import catalog, clock, rollup
from .db import connect, store_operation, write
from .errors import InvalidInput
from .models import assignments_t, audit_t, denials_t, holds_t, sessions_t
from .sessions import POOL_FULL, user_key
from .validation import check_whole

CM, RO, AA, EM = catalog.DEFAULT_PRODUCTS
NAMED_USER, CONCURRENT_USER = catalog.NAMED_USER, catalog.CONCURRENT_USER

# The demo's mix and a large store's (licusage.bulk), side by side. A large store is sized for
# its --active count, all of them at once, where the demo's customer-service centre has a third
# of its staff on shift at a time.
# (product, license type) -> seats as a share of the user count: (demo, large store)
_POOL_SHARES: dict[tuple[str, str], tuple[float, float]] = {
    (CM, NAMED_USER): (0.10, 0.15),
    (CM, CONCURRENT_USER): (0.32, 0.55),
    (RO, NAMED_USER): (0.03, 0.04),
    (RO, CONCURRENT_USER): (0.07, 0.16),
    (AA, NAMED_USER): (0.08, 0.10),
    (AA, CONCURRENT_USER): (0.22, 0.33),
    (EM, CONCURRENT_USER): (0.34, 0.55),
}
# job role -> (products used, share of users: demo, large store)
_ROLE_MIX: dict[str, tuple[tuple[str, ...], float, float]] = {
    "agent": ((CM, AA, EM), 0.65, 0.55),
    "supervisor": ((CM, RO), 0.10, 0.12),
    "analyst": ((RO,), 0.08, 0.13),
    "back_office": ((CM, EM), 0.17, 0.20),
}
# seats per pool as a share of the user count
SEAT_SHARES: dict[tuple[str, str], float] = {k: demo for k, (demo, _) in _POOL_SHARES.items()}
LARGE_SEAT_SHARES: dict[tuple[str, str], float] = {
    k: large for k, (_, large) in _POOL_SHARES.items()
}
# job role -> (share of users, products used); not the sign-in roles of licusage.actions.ROLES
JOB_ROLES: dict[str, tuple[float, tuple[str, ...]]] = {
    role: (demo, products) for role, (products, demo, _) in _ROLE_MIX.items()
}
LARGE_JOB_ROLES: dict[str, tuple[float, tuple[str, ...]]] = {
    role: (large, products) for role, (products, _, large) in _ROLE_MIX.items()
}


@dataclass(frozen=True)
class Region:
    """Where a share of the staff works: a fixed UTC offset (the demo has no daylight saving)."""

    name: str
    utc_offset: int
    share: float


REGIONS: tuple[Region, ...] = (
    Region("APAC", 10, 0.32),
    Region("EMEA", 1, 0.36),
    Region("Americas", -6, 0.32),
)

# agent shift -> (local start hour, share of a region's agents); a shift is about 8.5 h long
SHIFTS: dict[str, tuple[float, float]] = {
    "early": (6.0, 0.32),
    "day": (9.0, 0.40),
    "late": (14.5, 0.28),
}
OFFICE_START = 8.5  # local hour: supervisors, analysts, the back office (weekdays only)
SHIFT_HOURS = 8.5
THIN_SHIFT_HOURS = 10.0  # weekend and holiday agent shifts are longer: fewer people cover them
ABSENCE = 0.05  # share of rostered days someone is away (leave, sickness)
HOLIDAYS = ((1, 1), (12, 25))  # local (month, day): staffed like a weekend
BREAK_IDLE = 0.15  # share of people at work whose session sits idle (a break, a meeting)
FORGOTTEN = 0.05  # share of sessions left open, until the idle policy ends them
IDLE_POLICY = timedelta(hours=8)
STALE_NAMED_SEATS = 6  # one named seat in this many belongs to someone who no longer uses it

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


@dataclass(frozen=True)
class Staff:
    """One demo user: role, region, shift (``office`` for the non-agent roles), weekend rota."""

    name: str
    role: str
    region: Region
    shift: str
    rota: int  # 0, 1 or 2: an agent is off one weekend day or holiday in three


def user_names(count: int) -> list[str]:
    """`count` distinct, readable user names (``alice.smith``, ``bob.jones2``, ...)."""
    names = []
    for index in range(count):
        first = FIRST[index % len(FIRST)]
        last = LAST[(index // len(FIRST)) % len(LAST)]
        round_ = index // (len(FIRST) * len(LAST))
        names.append(f"{first}.{last}" + (str(round_ + 1) if round_ else ""))
    return names


def seat_count(users: int, share: float) -> int:
    """The seats a pool gets for `users` users at `share` of them (at least one)."""
    return max(1, round(users * share))


def pool_seats(
    users: int, shares: dict[tuple[str, str], float] = SEAT_SHARES
) -> dict[tuple[str, str], int]:
    """The seats of every pool of `shares` for `users` users (:func:`seat_count` each)."""
    return {pool: seat_count(users, share) for pool, share in shares.items()}


def _by_shares(items: list[str], shares: dict[str, float]) -> dict[str, str]:
    """Deal `items` (already shuffled) to keys in proportion to `shares`, exactly and in order."""
    total = sum(shares.values())
    keys = list(shares)
    dealt: dict[str, str] = {}
    given = dict.fromkeys(keys, 0)
    for index, item in enumerate(items):
        # the key furthest behind its quota after this item gets it (largest-remainder dealing)
        key = max(keys, key=lambda k: (index + 1) * shares[k] / total - given[k])
        given[key] += 1
        dealt[item] = key
    return dealt


def staff(names: list[str], rng: random.Random) -> dict[str, Staff]:
    """Roles, regions, shifts and weekend rotas of the demo's users, in set proportions."""
    order = names[:]
    rng.shuffle(order)
    roles = _by_shares(order, {role: share for role, (share, _) in JOB_ROLES.items()})
    regions = {region.name: region for region in REGIONS}
    people: dict[str, Staff] = {}
    for role in JOB_ROLES:
        members = [n for n in order if roles[n] == role]
        region_of = _by_shares(members, {r.name: r.share for r in REGIONS})
        for region in REGIONS:
            here = [n for n in members if region_of[n] == region.name]
            if role == "agent":
                shift_of = _by_shares(here, {s: share for s, (_, share) in SHIFTS.items()})
            else:
                shift_of = dict.fromkeys(here, "office")
            for index, name in enumerate(here):
                people[name] = Staff(name, role, regions[region.name], shift_of[name], index % 3)
    return people


def _named_users(
    names: list[str], roles: dict[str, str], seats: dict[tuple[str, str], int], rng: random.Random
) -> dict[str, set[str]]:
    """product -> users assigned to its named pool.

    Most named seats go to people whose role uses the product; about one in six went, long ago,
    to someone who has since changed role and no longer uses it: the unused named seats an
    analyst should find.
    """
    named: dict[str, set[str]] = {}
    for (product, license_type), count in seats.items():
        if license_type != NAMED_USER:
            continue
        users = [n for n in names if product in JOB_ROLES[roles[n]][1]]
        others = [n for n in names if product not in JOB_ROLES[roles[n]][1]]
        rng.shuffle(users)
        rng.shuffle(others)
        stale = min(len(others), count // STALE_NAMED_SEATS) if count > 1 else 0
        named[product] = set(users[: count - stale]) | set(others[:stale])
    return named


def is_thin_day(local_day: datetime) -> bool:
    """A weekend day or a public holiday: only agents work, fewer of them, longer shifts."""
    return local_day.weekday() >= 5 or (local_day.month, local_day.day) in HOLIDAYS


def is_day_off(person: Staff, local_day: datetime) -> bool:
    """Whether `person` is off on `local_day` by the roster (before any absence): office roles
    work weekdays, agents also two weekend days or holidays of three (by their rota)."""
    if not is_thin_day(local_day):
        return False
    if person.shift == "office":
        return True
    return (local_day.toordinal() + person.rota) % 3 == 0


def _plan_day(
    person: Staff,
    host: str,
    local_day: datetime,
    rng: random.Random,
    now: datetime,
) -> Iterator[_Plan]:
    """One person's sessions on one local day, following their shift; times in UTC."""
    off = is_day_off(person, local_day)
    absent = rng.random() < ABSENCE
    if off or absent:
        return
    products = JOB_ROLES[person.role][1]
    day = local_day - timedelta(hours=person.region.utc_offset)  # local midnight in UTC
    if person.shift == "office":
        begin_hour = min(max(rng.gauss(OFFICE_START, 0.8), 6.5), 11.0)
        hours = max(rng.gauss(8.0, 1.0), 4.0)
    else:
        begin_hour = SHIFTS[person.shift][0] + min(max(rng.gauss(0, 0.2), -0.5), 0.5)
        usual = THIN_SHIFT_HOURS if is_thin_day(local_day) else SHIFT_HOURS
        hours = min(max(rng.gauss(usual, 0.4), usual - 1.5), usual + 1.0)
    start = day + timedelta(hours=begin_hour)
    finish = start + timedelta(hours=hours)
    count = rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]
    length = (finish - start) / count
    for index in range(count):
        begin = start + length * index + timedelta(minutes=rng.uniform(0, 15) if index else 0)
        stop = start + length * (index + 1) - timedelta(minutes=rng.uniform(0, 10))
        used = tuple(p for p in products if rng.random() < 0.93) or products[:1]
        forgotten = rng.random() < FORGOTTEN
        on_break = rng.random() < BREAK_IDLE
        if begin >= now:
            return
        if stop > now and not forgotten:
            # working right now: active within the last minutes, or idle on a break
            idle = rng.uniform(20, 120) if on_break else rng.expovariate(1 / 5)
            last = max(begin, now - timedelta(minutes=idle))
            yield _Plan(person.name, host, begin, last, None, None, used)
        elif forgotten:
            # left open: ended by the site's idle policy, unless that is still ahead
            last = min(stop, now - timedelta(minutes=5))
            reaped = last + IDLE_POLICY
            if reaped <= now:
                yield _Plan(person.name, host, begin, last, reaped, "idle_timeout", used)
            else:
                yield _Plan(person.name, host, begin, last, None, None, used)
        else:
            yield _Plan(person.name, host, begin, stop, stop, "user_logout", used)


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


@dataclass
class DemoPlan:
    """What :func:`generate` writes, simulated in memory: pools, named users, sessions, denials."""

    now: datetime
    seats: dict[tuple[str, str], int]
    named: dict[str, set[str]]
    staff: dict[str, Staff]
    plans: list[_Plan]
    denials: list[tuple[datetime, str, str, str, str, str]]

    def open_sessions(self) -> list[_Plan]:
        """The sessions still open at `now` (each holds at least one license)."""
        return [p for p in self.plans if p.granted and p.end is None]


def _check_sizes(users: int, days: int, seed: int) -> None:
    for name, value, low in (("users", users, 1), ("days", days, 1), ("seed", seed, 0)):
        check_whole(value, name, low)


def simulate(
    users: int = 200,
    days: int = 14,
    seed: int = 0,
    now: datetime | None = None,
    progress: bool = False,
) -> DemoPlan:
    """The demo store :func:`generate` would write, without writing it (deterministic).

    Raises :class:`~licusage.errors.InvalidInput` for sizes below 1 (a seed below 0).
    """
    _check_sizes(users, days, seed)
    at = clock.current_db_time(now)
    rng = random.Random(seed)
    names = user_names(users)
    people = staff(names, rng)
    roles = {name: person.role for name, person in people.items()}
    seats = pool_seats(users)
    named = _named_users(names, roles, seats, rng)
    hosts = {name: f"ws-{index:05d}" for index, name in enumerate(names)}

    plans: list[_Plan] = []
    # local days, from the day before the window (a night shift reaching into it) to today
    first_day = (at - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day_iter = [first_day + timedelta(days=d) for d in range(days + 3)]
    for day in tqdm(
        day_iter, desc="simulating days", unit="day", disable=not progress, leave=False
    ):
        for name in names:
            host = hosts[name] if rng.random() < 0.85 else f"vdi-{rng.randrange(40):02d}"
            plans.extend(_plan_day(people[name], host, day, rng, at))
    plans = [p for p in plans if p.start >= at - timedelta(days=days)]
    plans.sort(key=lambda p: (p.start, p.user))
    denials = _simulate(plans, seats, named)
    return DemoPlan(at, seats, named, people, plans, denials)


def _session_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one())


@store_operation
def is_empty(engine: Engine) -> bool:
    """Whether the store holds no sessions (demo data goes only into such a store)."""
    return _session_count(engine) == 0


_opened = ExitStack()  # what open_demo made: removed, and the clock given back, at exit
atexit.register(_opened.close)


def open_demo(
    users: int = 200, days: int = 14, seed: int = 0, now: datetime | None = None
) -> Engine:
    """A new demo store (:func:`generate`) in a temporary folder removed at exit, read as of
    `now`: :func:`licusage.clock.now` stays `now` for the rest of the process, as a notebook
    wants (its figures are the same at any hour). Without `now`, the current time."""
    moment = clock.to_utc(now) if now is not None else clock.now()
    folder = _opened.enter_context(tempfile.TemporaryDirectory(prefix="licusage-demo-"))
    engine = connect(f"sqlite:///{folder}/demo.sqlite")
    _opened.callback(engine.dispose)
    generate(engine, users=users, days=days, seed=seed, now=moment)
    _opened.enter_context(clock.frozen(moment))
    return engine


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

    The same `users`, `days`, `seed` and `now` always give the same store (see
    :func:`simulate`). Raises :class:`~licusage.errors.InvalidInput` if the store already holds
    sessions.
    """
    _check_sizes(users, days, seed)
    existing = _session_count(engine)
    if existing:
        raise InvalidInput(
            f"the store already holds {existing} sessions; demo data goes only into an empty "
            "store (choose another database)"
        )
    plan = simulate(users, days, seed, now, progress)
    for (product, license_type), count in plan.seats.items():
        catalog.add_pool(engine, product, license_type, count)
    cat = catalog.read_catalog(engine)
    _write(engine, cat, plan.plans, plan.denials, plan.named, plan.now, progress)
    kept = [p for p in plan.plans if p.granted]
    return DemoSummary(
        users=users,
        sessions=len(kept),
        active_sessions=len(plan.open_sessions()),
        holds=sum(len(p.granted) for p in kept),
        denials=len(plan.denials),
        pools=len(plan.seats),
        now=plan.now,
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
        rollup.invalidate(conn)  # history written directly: recomputed from the first hold
        next_id = (conn.execute(sa.select(sa.func.max(sessions_t.c.id))).scalar() or 0) + 1
        session_rows, hold_rows, audit_rows = [], [], []
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
            if plan.end is not None and plan.reason != "user_logout":
                # as reap_idle does: every session the policy ended has its audit event
                audit_rows.append(
                    {
                        "at": plan.end,
                        "actor": "policy",
                        "action": "end_session",
                        "session_id": session_id,
                        "user_name": plan.user,
                        "reason": plan.reason,
                        "origin": None,
                        "detail": json.dumps({"licenses": dict(plan.granted)}, sort_keys=True),
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
            (audit_t, audit_rows, "audit events"),
        ):
            for batch in _batches(rows, f"writing {label}", progress):
                conn.execute(sa.insert(table), batch)
