"""History that matches the seat check (issue 15, finding 1), on SQLite and PostgreSQL.

Every grant and release is stamped inside the serialised write (SQLite's write lock held, or on
PostgreSQL the pool rows locked), so the brute-force count of holders over the recorded history
never exceeds the seats at any instant, and equals what a live monitor saw at each moment it
looked.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import actions, analytics, catalog, clock, db, sessions
from licusage.models import holds_t, pools_t
from tests.helpers import wait_until

PRODUCT = "Case Management"
OTHER = "Reports Only"
CONCURRENT_USER = catalog.CONCURRENT_USER


def holders_at(holds: list[tuple[str, datetime, datetime | None]], when: datetime) -> int:
    """Distinct users holding at instant `when` by the recorded history (brute force)."""
    return len(
        {
            user
            for user, granted, released in holds
            if granted <= when and (released is None or released > when)
        }
    )


def pool_history(conn: sa.Connection, pool_id: int) -> list[tuple[str, datetime, datetime | None]]:
    rows = conn.execute(
        sa.select(holds_t.c.user_name, holds_t.c.granted_at, holds_t.c.released_at).where(
            holds_t.c.pool_id == pool_id
        )
    ).all()
    return [(row.user_name, row.granted_at, row.released_at) for row in rows]


def history_peak(holds: list[tuple[str, datetime, datetime | None]]) -> int:
    """The most holders at any instant of the history (a count changes only at an event)."""
    instants = {granted for _, granted, _ in holds} | {r for _, _, r in holds if r is not None}
    return max((holders_at(holds, t) for t in instants), default=0)


class SteppingClock:
    """A clock one second later at every reading; remembers which threads read it."""

    def __init__(self, start: datetime) -> None:
        self.current = start
        self.readers: list[str] = []
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.current += timedelta(seconds=1)
            self.readers.append(threading.current_thread().name)
            return self.current


def test_login_waiting_behind_a_release_is_stamped_after_it(store_url, monkeypatch):
    """The reproduction of the issue: a 1-seat pool held by A; a transaction ending A holds the
    write lock (PostgreSQL: the pool row); B logs in meanwhile, waits, and is granted after A's
    release. B's grant must not be stamped before A's release (peak 2 for 1 seat)."""
    setup = db.connect(store_url)
    waiter = db.connect(store_url, create=False)
    try:
        pool_id = catalog.add_pool(setup, PRODUCT, CONCURRENT_USER, 1)
        first = sessions.login(setup, "alice", {PRODUCT: CONCURRENT_USER})
        assert first.session_id is not None
        start = datetime.now(UTC)
        fake = SteppingClock(start)
        monkeypatch.setattr(clock, "now", fake)
        locked = threading.Event()
        outcome: dict[str, object] = {}

        def hold_and_release() -> None:
            with db.write(setup) as conn:
                # SQLite: the write lock is held; PostgreSQL: lock the pool row as an end does
                conn.execute(
                    sa.select(pools_t.c.id).where(pools_t.c.id == pool_id).with_for_update()
                ).all()
                locked.set()
                # before the fix, B reads the clock at once, before it waits; after it, B
                # waits for the lock without having read the clock
                with contextlib.suppress(AssertionError):
                    wait_until(lambda: "bob" in fake.readers, timeout=2)
                sessions.end_sessions(
                    conn, [first.session_id], actor="holder", reason=sessions.ADMIN_LOGOUT
                )

        def bob() -> None:
            outcome["result"] = sessions.login(waiter, "bob", {PRODUCT: CONCURRENT_USER})

        holder = threading.Thread(target=hold_and_release, name="holder")
        holder.start()
        assert locked.wait(30)
        second = threading.Thread(target=bob, name="bob")
        second.start()
        holder.join(60)
        second.join(60)
        result = outcome["result"]
        assert isinstance(result, sessions.LoginResult)
        assert result.session_id is not None, result  # granted once A's seat came back
        with setup.connect() as conn:
            holds = pool_history(conn, pool_id)
        released = {user: r for user, _, r in holds}["alice"]
        granted = {user: g for user, g, _ in holds}["bob"]
        assert released is not None
        assert granted >= released
        assert history_peak(holds) == 1
        peaks = analytics.peaks(setup, start - timedelta(hours=1), start + timedelta(hours=1))
        assert peaks["peak"].max() <= 1
    finally:
        waiter.dispose()
        setup.dispose()


USERS = [f"user{i}" for i in range(7)]
SEATS = {PRODUCT: 2, OTHER: 3}
WORKERS = 4
OPERATIONS = 45


@dataclass
class Monitor:
    """Looks at the live store inside the serialised write: (time, holders per pool)."""

    engine: Engine
    pool_ids: dict[str, int]
    samples: list[tuple[datetime, dict[str, int]]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def look(self) -> None:
        with db.write(self.engine) as conn:
            # every pool row locked on PostgreSQL (SQLite: the write lock): nothing in flight
            conn.execute(sa.select(pools_t.c.id).order_by(pools_t.c.id).with_for_update()).all()
            when = clock.current_db_time()
            counts = dict(
                conn.execute(
                    sa.select(holds_t.c.pool_id, sa.func.count(sa.distinct(holds_t.c.user_name)))
                    .where(holds_t.c.released_at.is_(None))
                    .group_by(holds_t.c.pool_id)
                ).all()
            )
        self.samples.append((when, {p: counts.get(i, 0) for p, i in self.pool_ids.items()}))

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.look()
                self.stop.wait(0.01)
        except BaseException as error:
            self.errors.append(error)


def _worker(engine: Engine, seed: int, known: list[int], errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    mine: list[int] = []
    try:
        for _ in range(OPERATIONS):
            roll = rng.random()
            if roll < 0.55 or not mine:
                wanted = rng.sample(sorted(SEATS), rng.choice([1, 1, 2]))
                result = sessions.login(
                    engine, rng.choice(USERS), dict.fromkeys(wanted, CONCURRENT_USER)
                )
                if result.session_id is not None:
                    mine.append(result.session_id)
                    known.append(result.session_id)
            elif roll < 0.8:
                sessions.end(engine, mine.pop(rng.randrange(len(mine))))
            elif roll < 0.97:
                targets = rng.sample(known, min(len(known), rng.randint(1, 4)))
                actions.logout_sessions(engine, targets, actor="property-admin")
            else:
                actions.reap_idle(engine, timedelta(0), actor="property-policy")
    except BaseException as error:
        errors.append(error)


@pytest.fixture
def racing_engines(store_url) -> Iterator[list[Engine]]:
    made = [db.connect(store_url, create=(i == 0)) for i in range(WORKERS + 2)]
    yield made
    for engine in made:
        engine.dispose()


@pytest.mark.parametrize("seed", [15, 1515])
def test_history_never_exceeds_seats_and_matches_a_live_monitor(racing_engines, seed):
    """Random concurrent login / end / logout / reap, then the history, brute-force counted at
    every instant, never has more holders than seats, and at each moment the monitor looked it
    says exactly what the monitor saw."""
    setup, monitor_engine, clients = racing_engines[0], racing_engines[1], racing_engines[2:]
    pool_ids = {p: catalog.add_pool(setup, p, CONCURRENT_USER, n) for p, n in SEATS.items()}
    monitor = Monitor(monitor_engine, pool_ids)
    watcher = threading.Thread(target=monitor.run)
    known: list[int] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_worker, args=(engine, seed * 100 + i, known, errors))
        for i, engine in enumerate(clients)
    ]
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    monitor.stop.set()
    watcher.join(60)
    monitor.look()  # and once more at the end
    assert not errors, repr(errors[:3])
    assert not monitor.errors, repr(monitor.errors[:3])
    with setup.connect() as conn:
        histories = {p: pool_history(conn, i) for p, i in pool_ids.items()}
    most_seen = dict.fromkeys(SEATS, 0)
    for product, holds in histories.items():
        assert history_peak(holds) <= SEATS[product], product
    for when, counts in monitor.samples:
        for product, holds in histories.items():
            assert holders_at(holds, when) == counts[product], (product, when)
            most_seen[product] = max(most_seen[product], counts[product])
    assert len(monitor.samples) > 2
    assert sum(len(h) for h in histories.values()) > 20  # the race did happen
    assert all(history_peak(histories[p]) >= most_seen[p] for p in SEATS)
    print(
        f"\n[history {setup.dialect.name} seed {seed}] {WORKERS} x {OPERATIONS} operations, "
        f"{sum(len(h) for h in histories.values())} holds, {len(monitor.samples)} monitor "
        f"samples, peaks {[history_peak(h) for h in histories.values()]} for seats "
        f"{list(SEATS.values())}"
    )
