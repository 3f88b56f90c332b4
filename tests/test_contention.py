"""Correctness under concurrency and faults, on SQLite and PostgreSQL.

* Seats under contention: 64 logins at once (each thread its own engine, so its own connection)
  into a Concurrent pool of 10 seats, 50 rounds.
* Racing logouts: two admins end overlapping sets of 1,000 sessions at the same moment.
* Atomicity: a database-level failure in the middle of a bulk logout changes nothing.

Each test prints its figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import actions, catalog, clock, db, sessions
from licusage.models import audit_t, denials_t, holds_t, sessions_t
from licusage.sessions import POOL_FULL
from tests.helpers import connect_waiting
from tests.test_hostile import store_checksum

PRODUCT = "Case Management"
CONCURRENT_USER = catalog.CONCURRENT_USER
LOGINS = 64
SEATS = 10
ROUNDS = 50
DISTINCT_USERS = 48  # fewer users than logins: some log in twice at once and share their seat


@dataclass
class RoundFigures:
    granted: list[sessions.LoginResult] = field(default_factory=list)
    refused: list[sessions.LoginResult] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def _holders(conn: sa.Connection, pool_id: int) -> int:
    """Distinct users holding the pool in active sessions right now."""
    return conn.execute(
        sa.select(sa.func.count(sa.distinct(holds_t.c.user_name))).where(
            holds_t.c.pool_id == pool_id, holds_t.c.released_at.is_(None)
        )
    ).scalar_one()


class Watcher(threading.Thread):
    """Counts the pool's holders over and over on its own connection while logins run."""

    def __init__(self, engine: Engine, pool_id: int) -> None:
        super().__init__(daemon=True)
        self.engine, self.pool_id = engine, pool_id
        self.stop = threading.Event()
        self.most = 0
        self.samples = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self.stop.is_set():
                    self.most = max(self.most, _holders(conn, self.pool_id))
                    conn.rollback()  # a fresh snapshot for the next sample
                    self.samples += 1
                    self.stop.wait(0.002)  # leave the CPU to the clients
        except BaseException as error:
            self.error = error


def _run_together(tasks: list[Callable[[], None]]) -> None:
    """Run the tasks in threads released at the same moment by a barrier; wait for all."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[], None]) -> None:
        barrier.wait()
        task()

    threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def engines(store_url) -> Iterator[list[Engine]]:
    """One engine (one connection) per concurrent client, plus one for set-up and checks; each
    waits for a free connection when the server is full."""
    made = [connect_waiting(store_url, create=(i == 0)) for i in range(LOGINS + 1)]
    yield made
    for engine in made:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.xdist_group("pg_contention")  # 66 connections: never next to the other one
def test_seats_under_contention(engines, store_url):
    setup, clients = engines[0], engines[1:]
    pool_id = catalog.add_pool(setup, PRODUCT, CONCURRENT_USER, SEATS)
    watcher = Watcher(connect_waiting(store_url, create=False), pool_id)
    watcher.start()
    totals = Counter[str]()
    started = time.perf_counter()
    try:
        for round_number in range(ROUNDS):
            figures = RoundFigures()
            lock = threading.Lock()

            def client(
                i: int, figures: RoundFigures = figures, lock: threading.Lock = lock
            ) -> None:
                try:
                    result = sessions.login(
                        clients[i], f"user{i % DISTINCT_USERS:02d}", {PRODUCT: CONCURRENT_USER}
                    )
                except BaseException as error:
                    with lock:
                        figures.errors.append(error)
                    return
                with lock:
                    (figures.granted if result.session_id else figures.refused).append(result)

            denials_before = _count(setup, denials_t)
            _run_together([lambda i=i: client(i) for i in range(LOGINS)])

            assert not figures.errors, f"round {round_number}: {figures.errors[:3]!r}"
            assert len(figures.granted) + len(figures.refused) == LOGINS
            assert all(r.denied == {PRODUCT: POOL_FULL} for r in figures.refused)
            with setup.connect() as conn:
                holders = _holders(conn, pool_id)
                granted_users = set(
                    conn.execute(
                        sa.select(sessions_t.c.user_name).where(
                            sessions_t.c.id.in_([r.session_id for r in figures.granted]),
                            sessions_t.c.ended_at.is_(None),
                        )
                    ).scalars()
                )
            assert holders == SEATS  # full, never over: 48 users competed for 10 seats
            assert len(granted_users) == SEATS
            assert _count(setup, denials_t) - denials_before == len(figures.refused)

            totals["grants"] += len(figures.granted)
            totals["denials"] += len(figures.refused)
            ended = actions.logout_sessions(
                setup, [r.session_id for r in figures.granted], actor="contention-test"
            )
            assert len(ended.logged_out) == len(figures.granted)
    finally:
        watcher.stop.set()
        watcher.join()
        watcher.engine.dispose()
    elapsed = time.perf_counter() - started
    assert watcher.error is None, repr(watcher.error)
    assert watcher.samples > 0
    assert watcher.most <= SEATS
    with setup.connect() as conn:
        assert _holders(conn, pool_id) == 0
    assert _count(setup, denials_t) == totals["denials"]
    print(
        f"\n[contention {setup.dialect.name}] {ROUNDS} rounds x {LOGINS} logins = "
        f"{ROUNDS * LOGINS} logins into {SEATS} seats: {totals['grants']} grants, "
        f"{totals['denials']} denials (all recorded), most holders seen while running "
        f"{watcher.most} in {watcher.samples} samples; {elapsed:.1f} s"
    )


PROCESSES = 4
PROCESS_ROUNDS = 10


def _login_worker(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """A separate process (as a second server would be): 16 threads, own engines, each round
    released together with the other processes' threads."""
    per_process = LOGINS // PROCESSES
    engines = [connect_waiting(url, create=False) for _ in range(per_process)]
    try:
        for _ in range(rounds):
            outcome: dict[str, list] = {"granted": [], "refused": [], "errors": []}
            lock = threading.Lock()

            def client(
                i: int, outcome: dict[str, list] = outcome, lock: threading.Lock = lock
            ) -> None:
                number = worker * per_process + i
                try:
                    result = sessions.login(
                        engines[i], f"user{number % DISTINCT_USERS:02d}", {PRODUCT: CONCURRENT_USER}
                    )
                except BaseException as error:
                    with lock:
                        outcome["errors"].append(f"{type(error).__name__}: {error}")
                    return
                with lock:
                    if result.session_id:
                        outcome["granted"].append(result.session_id)
                    else:
                        outcome["refused"].append(result.denied.get(PRODUCT))

            barrier.wait()  # all processes start the round together
            _run_together([lambda i=i: client(i) for i in range(per_process)])
            results.put(outcome)
            barrier.wait()  # the parent checks and ends the sessions
            barrier.wait()
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.slow
@pytest.mark.xdist_group("pg_contention")
def test_seats_under_contention_across_processes(engine, store_url):
    """64 logins per round from 4 processes x 16 threads: on SQLite, writers of different
    processes meet SQLite's own lock (not the in-process one), and still no error escapes."""
    pool_id = catalog.add_pool(engine, PRODUCT, CONCURRENT_USER, SEATS)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_login_worker, args=(store_url, w, PROCESS_ROUNDS, barrier, results))
        for w in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    totals = Counter[str]()
    started = time.perf_counter()
    try:
        for round_number in range(PROCESS_ROUNDS):
            barrier.wait(timeout=900)
            outcomes = [results.get(timeout=900) for _ in workers]
            barrier.wait(timeout=900)
            errors = [e for outcome in outcomes for e in outcome["errors"]]
            granted = [i for outcome in outcomes for i in outcome["granted"]]
            refused = [r for outcome in outcomes for r in outcome["refused"]]
            assert not errors, f"round {round_number}: {errors[:3]}"
            assert len(granted) + len(refused) == LOGINS
            assert set(refused) <= {POOL_FULL}
            with engine.connect() as conn:
                assert _holders(conn, pool_id) == SEATS
            totals["grants"] += len(granted)
            totals["denials"] += len(refused)
            actions.logout_sessions(engine, granted, actor="contention-test")
            barrier.wait(timeout=900)
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    elapsed = time.perf_counter() - started
    assert all(worker.exitcode == 0 for worker in workers)
    assert _count(engine, denials_t) == totals["denials"]
    print(
        f"\n[contention across processes {engine.dialect.name}] {PROCESS_ROUNDS} rounds x "
        f"{PROCESSES} processes x {LOGINS // PROCESSES} threads = {PROCESS_ROUNDS * LOGINS} "
        f"logins into {SEATS} seats: {totals['grants']} grants, {totals['denials']} denials "
        f"(all recorded); {elapsed:.1f} s"
    )


def _count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def add_sessions(engine: Engine, count: int, at: datetime | None = None) -> list[int]:
    """Insert `count` active sessions, each holding a Case Management license (bulk set-up)."""
    pool_id = catalog.add_pool(engine, PRODUCT, CONCURRENT_USER, count)
    pool = catalog.read_catalog(engine).pool(PRODUCT, CONCURRENT_USER)
    assert pool is not None
    assert pool.id == pool_id
    when = clock.current_db_time(at) - timedelta(hours=1)
    with db.write(engine) as conn:
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(sessions_t.c.id), 0))).scalar()
        ids = list(range(start + 1, start + 1 + count))
        conn.execute(
            sa.insert(sessions_t),
            [
                {
                    "id": i,
                    "user_name": f"u{i}",
                    "user_key": f"u{i}",
                    "host": "bulk",
                    "started_at": when,
                    "last_activity": when,
                }
                for i in ids
            ],
        )
        conn.execute(
            sa.insert(holds_t),
            [
                {
                    "session_id": i,
                    "product_id": pool.product_id,
                    "license_type_id": pool.license_type_id,
                    "pool_id": pool.id,
                    "user_name": f"u{i}",
                    "granted_at": when,
                }
                for i in ids
            ],
        )
        if conn.dialect.name == "postgresql":  # explicit ids: move the sequence past them
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('sessions', 'id'), "
                "(SELECT max(id) FROM sessions))"
            )
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(3))
def test_racing_logouts(engine, store_url, repeat):
    setup = engine
    admins = [db.connect(store_url) for _ in range(2)]
    ids = add_sessions(setup, 1_500)
    first, second = ids[:1_000], ids[500:]
    results: dict[str, actions.LogoutResult] = {}
    errors: list[BaseException] = []

    def admin(name: str, engine: Engine, targets: list[int]) -> Callable[[], None]:
        def act() -> None:
            try:
                results[name] = actions.logout_sessions(engine, targets, actor=name)
            except BaseException as error:
                errors.append(error)

        return act

    started = time.perf_counter()
    try:
        _run_together([admin("admin-a", admins[0], first), admin("admin-b", admins[1], second)])
    finally:
        for each in admins:
            each.dispose()
    elapsed = time.perf_counter() - started
    assert not errors, repr(errors)
    a, b = results["admin-a"], results["admin-b"]
    assert not set(a.logged_out) & set(b.logged_out)
    assert set(a.logged_out) | set(b.logged_out) == set(ids)
    for result, targets in ((a, first), (b, second)):
        assert set(result.logged_out) | set(result.already_ended) == set(targets)
        assert not set(result.logged_out) & set(result.already_ended)
        assert result.unknown == ()
        assert result.spared == ()
    with setup.connect() as conn:
        ended_by = dict(
            conn.execute(
                sa.select(sessions_t.c.id, sessions_t.c.ended_by).where(sessions_t.c.id.in_(ids))
            ).all()
        )
        events = conn.execute(
            sa.select(audit_t.c.session_id, audit_t.c.actor).where(
                audit_t.c.action == "end_session"
            )
        ).all()
        still_held = conn.execute(
            sa.select(sa.func.count())
            .select_from(holds_t)
            .where(holds_t.c.session_id.in_(ids), holds_t.c.released_at.is_(None))
        ).scalar_one()
    assert {i: ended_by[i] for i in a.logged_out} == dict.fromkeys(a.logged_out, "admin-a")
    assert {i: ended_by[i] for i in b.logged_out} == dict.fromkeys(b.logged_out, "admin-b")
    per_session = Counter(session_id for session_id, _ in events)
    assert set(per_session) == set(ids)
    assert set(per_session.values()) == {1}
    assert dict(events) == {
        **dict.fromkeys(a.logged_out, "admin-a"),
        **dict.fromkeys(b.logged_out, "admin-b"),
    }
    assert still_held == 0
    print(
        f"\n[racing logouts {setup.dialect.name}] 2 admins x 1,000 sessions (500 shared): "
        f"a ended {len(a.logged_out)} (found {len(a.already_ended)} already ended), "
        f"b ended {len(b.logged_out)} (found {len(b.already_ended)}); "
        f"{len(events)} audit events; {elapsed:.2f} s"
    )


FAULTS = {
    # (table, trigger timing) -> fails on the row of the session at this position
    "session update in the second chunk": ("sessions", "UPDATE", "id", 5_500),
    "hold release": ("session_licenses", "UPDATE", "session_id", 3_000),
    "audit insert": ("audit_events", "INSERT", "session_id", 3_000),
}


def _install_fault(engine: Engine, table: str, operation: str, column: str, value: int) -> None:
    """A trigger that makes the database itself fail on one row (value is a trusted int)."""
    value = int(value)
    with db.write(engine) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER licusage_test_fault BEFORE {operation} ON {table} "
                f"WHEN NEW.{column} = {value} BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION licusage_test_fault() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER licusage_test_fault BEFORE {operation} ON {table} "
                f"FOR EACH ROW WHEN (NEW.{column} = {value}) "
                "EXECUTE FUNCTION licusage_test_fault()"
            )


def _remove_fault(engine: Engine, table: str) -> None:
    with db.write(engine) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER licusage_test_fault")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER licusage_test_fault ON {table}")
            conn.exec_driver_sql("DROP FUNCTION licusage_test_fault()")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_failure_in_the_middle_of_a_bulk_logout_changes_nothing(engine, fault):
    ids = add_sessions(engine, 6_000)  # more than one chunk of sessions.ID_CHUNK
    assert len(ids) > sessions.ID_CHUNK
    table, operation, column, position = FAULTS[fault]
    _install_fault(engine, table, operation, column, ids[position])
    before = store_checksum(engine)
    with pytest.raises(sa.exc.DBAPIError, match="injected failure"):
        actions.logout_sessions(engine, ids, actor="admin")
    assert store_checksum(engine) == before
    _remove_fault(engine, table)
    result = actions.logout_sessions(engine, ids, actor="admin")  # the store is still usable
    assert result.logged_out == tuple(ids)
    assert _count(engine, audit_t) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_server_process_does_not_inherit_a_held_writer_lock(sqlite_url):
    """``--num-procs`` forks while, say, the in-server reaper may be writing: the child must
    not inherit the parent's in-process SQLite writer lock (it would wait forever)."""
    engine = db.connect(sqlite_url)
    held, release = threading.Event(), threading.Event()

    def parent_writer() -> None:
        # a writer of the parent caught at fork time between taking the in-process lock and
        # opening its connection (an open SQLite connection must never cross a fork at all)
        with db._sqlite_writer_lock(engine):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=parent_writer)
    thread.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: a new engine, as a forked server process makes
        code = 1
        try:
            child = db.create_engine(sqlite_url)
            with db.write(child) as conn:
                conn.exec_driver_sql("SELECT 1")
            code = 0
        finally:
            os._exit(code)
    release.set()  # the parent's SQLite transaction ends; the child's can begin
    thread.join()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child waited forever for the parent's writer lock")
    assert os.waitstatus_to_exitcode(status) == 0
    engine.dispose()
