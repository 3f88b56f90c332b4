"""The hourly roll-up (licusage.rollup, licusage.analytics.rollup) against brute force over the
holds (concurrency and hour_of_week read it): random writes interleaved with reads, backdated writes, PostgreSQL, concurrent writers,
a writer killed mid-way, and ``licusage rollup rebuild``."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from licusage import analytics, catalog, clock, db, sessions
from licusage.analytics import loading, rollup, usage
from licusage.cli import main
from licusage.models import (
    PER_CHECKOUT,
    denials_t,
    holds_t,
    pool_seats_t,
    pools_t,
    rollup_dirty_t,
    rollup_hours_t,
)
from licusage.sources.flexlm_log import import_flexlm_log
from licusage.sources.rlm_log import import_rlm_log

BASE = datetime(2026, 3, 2, tzinfo=UTC)
USERS = ["ann", "ben", "cat", "dan", "eve"]
# (product, license type, seats, counting)
POOLS = [
    ("Case Management", "Concurrent User", 2, "per_user"),
    ("Reporting", "Floating", 3, PER_CHECKOUT),
]
HOUR = timedelta(hours=1)


def minute(m: int) -> datetime:
    return BASE + timedelta(minutes=m)


def add_pools(engine: Engine) -> None:
    for product, license_type, seats, counting in POOLS:
        catalog.add_pool(engine, product, license_type, seats, counting=counting)


def stored(engine: Engine) -> tuple[dict[int, str], list[tuple], list[tuple]]:
    """The store as brute force sees it: pool counting, holds, denials (naive UTC)."""
    with engine.connect() as conn:
        counting = dict(conn.execute(sa.select(pools_t.c.id, pools_t.c.counting)).all())
        holds = conn.execute(
            sa.select(
                holds_t.c.pool_id,
                holds_t.c.user_name,
                holds_t.c.granted_at,
                holds_t.c.released_at,
                holds_t.c.licenses,
            )
        ).all()
        denied = conn.execute(sa.select(denials_t.c.pool_id, denials_t.c.at)).all()
    return counting, [tuple(h) for h in holds], [tuple(d) for d in denied]


def in_use(counting: str, spans: list[tuple[str, datetime, datetime, int]], t: datetime) -> int:
    live = [(u, n) for u, s, e, n in spans if s <= t < e]
    return sum(n for _, n in live) if counting == PER_CHECKOUT else len({u for u, _ in live})


def brute_concurrency(
    engine: Engine, lo: datetime, hi: datetime, step: timedelta, now: datetime
) -> dict[int, list[int]]:
    """pool id -> the maximum of in use over each bucket, checking every instant it can change;
    open holds count until ``min(hi, now)``."""
    counting, holds, _ = stored(engine)
    until = max(lo, min(hi, now))
    result = {}
    for pool_id, rule in counting.items():
        spans = [
            (u, s, until if e is None else e, n)
            for p, u, s, e, n in holds
            if p == pool_id and s < (until if e is None else e)
        ]
        instants = sorted({s for _, s, _, _ in spans} | {e for _, _, e, _ in spans})
        values = []
        b = lo
        while b < hi:
            b_end = min(b + step, hi)
            candidates = [b] + [t for t in instants if b < t < b_end]
            values.append(max(in_use(rule, spans, t) for t in candidates))
            b += step
        result[pool_id] = values
    return result


def brute_hours(engine: Engine, upto: datetime) -> dict[tuple[int, datetime], tuple[int, int]]:
    """(pool id, hour) -> (peak, denials) of every complete hour before `upto` with either."""
    counting, holds, denied = stored(engine)
    first = min([h[2] for h in holds] + [d[1] for d in denied], default=upto)
    hour = first.replace(minute=0, second=0, microsecond=0)
    out = {}
    while hour < upto:
        for pool_id in counting:
            peak = brute_concurrency_one(counting[pool_id], holds, pool_id, hour, upto)
            count = sum(1 for p, at in denied if p == pool_id and hour <= at < hour + HOUR)
            if peak or count:
                out[(pool_id, hour)] = (peak, count)
        hour += HOUR
    return out


def brute_concurrency_one(rule: str, holds: list[tuple], pool_id: int, hour, now) -> int:
    spans = [(u, s, now if e is None else e, n) for p, u, s, e, n in holds if p == pool_id]
    spans = [sp for sp in spans if sp[1] < sp[2]]
    instants = [hour] + [t for _, s, e, _ in spans for t in (s, e) if hour < t < hour + HOUR]
    return max(in_use(rule, spans, t) for t in instants)


def rolled_hours(engine: Engine) -> dict[tuple[int, datetime], tuple[int, int]]:
    with engine.connect() as conn:
        frame = rollup.hours(conn, 0, analytics.HOUR_NS * 10**6)
    return {
        (int(r.pool_id), pd.Timestamp(r.hour).to_pydatetime()): (int(r.peak), int(r.denials))
        for r in frame.itertuples()
    }


def frame_by_pool(engine: Engine, frame: pd.DataFrame) -> dict[int, list[int]]:
    cat = catalog.read_catalog(engine)
    return {p.id: frame[(p.product, p.license_type)].tolist() for p in cat.pools}


def check_window(engine: Engine, lo: datetime, hours: int, step_hours: int) -> None:
    """concurrency over whole hours (the roll-up path) equals brute force over the holds."""
    hi = lo + hours * HOUR + timedelta(minutes=7 * (hours % 3))  # some windows end mid-hour
    step = step_hours * HOUR
    frame = analytics.concurrency(engine, lo, hi, f"{step_hours}h")
    now = clock.to_db(clock.now())
    expected = brute_concurrency(engine, clock.to_db(lo), clock.to_db(hi), step, now)
    assert frame_by_pool(engine, frame) == expected


def observed_period(pool_id, created, holds, denied, lo, until) -> tuple[datetime, datetime]:
    """A pool's observed period in ``[lo, until)``: from its birth (created, or its first hold
    or denial if earlier), until `until`."""
    birth = min(
        [created[pool_id]]
        + [h[2] for h in holds if h[0] == pool_id]
        + [d[1] for d in denied if d[0] == pool_id]
    )
    o_lo = max(lo, birth)
    return o_lo, max(o_lo, until)


def brute_hour_of_week(
    engine: Engine, lo: datetime, hi: datetime, now: datetime
) -> dict[tuple[int, int, int], tuple[float, int]]:
    """(pool id, weekday, hour) -> (time-weighted mean, peak) over the pools' observed periods,
    integrating in use piece by piece."""
    counting, holds, denied = stored(engine)
    with engine.connect() as conn:
        created = dict(conn.execute(sa.select(pools_t.c.id, pools_t.c.created_at)).all())
    until = max(lo, min(hi, now))
    sums: dict[tuple[int, int, int], list[float]] = {}
    for pool_id, rule in counting.items():
        o_lo, o_hi = observed_period(pool_id, created, holds, denied, lo, until)
        spans = [(u, s, until if e is None else e, n) for p, u, s, e, n in holds if p == pool_id]
        edge = o_lo.replace(minute=0, second=0, microsecond=0)
        while o_lo < o_hi and edge < o_hi:
            b_lo, b_hi = max(edge, o_lo), min(edge + HOUR, o_hi)
            cuts = sorted(
                {b_lo, b_hi} | {t for _, s, e, _ in spans for t in (s, e) if b_lo < t < b_hi}
            )
            levels = [in_use(rule, spans, t) for t in cuts[:-1]]
            area = sum(
                v * (b - a).total_seconds() for v, a, b in zip(levels, cuts, cuts[1:], strict=False)
            )
            entry = sums.setdefault((pool_id, edge.weekday(), edge.hour), [0.0, 0.0, 0])
            entry[0] += area
            entry[1] += (b_hi - b_lo).total_seconds()
            entry[2] = max(entry[2], max(levels))
            edge += HOUR
    return {k: (a / secs, int(peak)) for k, (a, secs, peak) in sums.items()}


def check_hour_of_week(engine: Engine, lo: datetime, hi: datetime) -> None:
    """hour_of_week (the roll-up for whole hours, the holds for the rest) equals brute force."""
    frame = analytics.hour_of_week(engine, lo, hi)
    expected = brute_hour_of_week(
        engine, clock.to_db(lo), clock.to_db(hi), clock.to_db(clock.now())
    )
    pools = {(p.product, p.license_type): p.id for p in catalog.read_catalog(engine).pools}
    got = {
        (pools[(r.product, r.license_type)], r.weekday, r.hour): (r.mean, r.peak)
        for r in frame.itertuples()
    }
    assert got.keys() == expected.keys()
    for key, (mean, peak) in expected.items():
        assert got[key][1] == peak, key
        assert got[key][0] == pytest.approx(mean, rel=1e-9, abs=1e-9), key


def brute_peaks(engine: Engine, lo: datetime, hi: datetime, now: datetime) -> dict[int, dict]:
    """pool id -> peaks' figures, integrating in use piece by piece between every instant it or
    the seats can change, over the pool's observed period (from its birth, until now)."""
    counting, holds, denied = stored(engine)
    with engine.connect() as conn:
        created = dict(conn.execute(sa.select(pools_t.c.id, pools_t.c.created_at)).all())
        history = conn.execute(
            sa.select(pool_seats_t.c.pool_id, pool_seats_t.c.valid_from, pool_seats_t.c.seats)
        ).all()
        current = dict(conn.execute(sa.select(pools_t.c.id, pools_t.c.seats)).all())
    until = max(lo, min(hi, now))
    out = {}
    for pool_id, rule in counting.items():
        o_lo, o_hi = observed_period(pool_id, created, holds, denied, lo, until)
        if o_hi <= o_lo:
            continue
        changes = sorted((v, n) for p, v, n in history if p == pool_id)

        def seats_at(t: datetime, changes=changes, pool_id=pool_id) -> int | None:
            if not changes:
                return current[pool_id]
            in_force = [n for v, n in changes if v <= t]
            return in_force[-1] if in_force else changes[0][1]

        spans = [(u, s, until if e is None else e, n) for p, u, s, e, n in holds if p == pool_id]
        cuts = sorted(
            {o_lo, o_hi}
            | {t for _, s, e, _ in spans for t in (s, e) if o_lo < t < o_hi}
            | {v for v, _ in changes if o_lo < v < o_hi}
        )
        pieces = [
            (a, (b - a) // timedelta(microseconds=1), in_use(rule, spans, a), seats_at(a))
            for a, b in itertools.pairwise(cuts)
        ]
        total = sum(d for _, d, _, _ in pieces)
        top = max(level for _, _, level, _ in pieces)

        def quantile(q: float, pieces=pieces, total=total) -> float:
            run = 0
            for level in sorted({p[2] for p in pieces}):
                run += sum(d for _, d, lv, _ in pieces if lv == level)
                if run / total >= q * (1 - 1e-12):
                    return float(level)
            raise AssertionError("unreachable")

        known = any(seats is not None for *_, seats in pieces)
        near = sum(d for _, d, lv, n in pieces if n is not None and 10 * lv >= 9 * n)
        out[pool_id] = {
            "peak": top,
            "peak_at": next(a for a, _, lv, _ in pieces if lv == top) if top else None,
            "p95": quantile(0.95),
            "p99": quantile(0.99),
            "share_near_full": near / total if known else None,
            "mean": sum(d * lv for _, d, lv, _ in pieces) / total,
        }
    return out


def check_peaks(engine: Engine, lo: datetime, hi: datetime) -> None:
    """peaks (the roll-up for whole hours, the holds for the rest) is identical to peaks from
    the holds alone, and both equal brute force."""
    frame = analytics.peaks(engine, lo, hi)
    reference = usage.peaks_from_holds(engine, loading.window_of(lo, hi))
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    expected = brute_peaks(engine, clock.to_db(lo), clock.to_db(hi), clock.to_db(clock.now()))
    pools = {(p.product, p.license_type): p.id for p in catalog.read_catalog(engine).pools}
    for row in frame.itertuples():
        want = expected.get(pools[(row.product, row.license_type)])
        if want is None:
            assert row.peak == 0, row
            assert pd.isna(row.p95), row
            continue
        assert row.peak == want["peak"], row
        at = None if pd.isna(row.peak_at) else clock.to_db(row.peak_at.to_pydatetime())
        assert at == want["peak_at"], row
        assert (row.p95, row.p99) == (want["p95"], want["p99"]), row
        if want["share_near_full"] is None:
            assert pd.isna(row.share_near_full), row
        else:
            assert row.share_near_full == pytest.approx(want["share_near_full"], rel=1e-12)
        assert row.mean == want["mean"], row


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("login"),
            st.sampled_from(USERS),
            st.sampled_from([0, 1]),  # which pool
            st.integers(0, 14 * 60),  # start minute (may be before earlier writes)
        ),
        st.tuples(st.just("end"), st.integers(0, 50), st.integers(0, 5 * 60)),
        st.tuples(
            st.just("read"), st.integers(-2, 14), st.integers(0, 16), st.sampled_from([1, 2, 5])
        ),
        st.tuples(st.just("tick"), st.integers(1, 180)),
        st.tuples(
            st.just("seats"),
            st.sampled_from([0, 1]),
            st.one_of(st.none(), st.integers(0, 4)),
            st.integers(-60, 14 * 60),  # when (on the hour or inside one)
        ),
    ),
    max_size=30,
)


def run_operations(engine: Engine, monkeypatch, planned: list[tuple]) -> None:
    now = [minute(6 * 60)]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    add_pools(engine)
    logins: list[tuple[int, datetime]] = []
    for op in planned:
        if op[0] == "login":
            _, user, pool, start = op
            product, license_type, _, _ = POOLS[pool]
            result = sessions.login(engine, user, {product: license_type}, at=minute(start))
            if result.session_id is not None:
                logins.append((result.session_id, minute(start)))
        elif op[0] == "end" and logins:
            session_id, began = logins[op[1] % len(logins)]
            sessions.end(engine, session_id, at=began + timedelta(minutes=op[2]))
        elif op[0] == "read":
            check_window(engine, BASE + op[1] * HOUR, op[2], op[3])
            start = BASE + op[1] * HOUR + timedelta(minutes=13 * (op[3] == 5))
            check_hour_of_week(engine, start, start + op[2] * HOUR + timedelta(minutes=op[3]))
            check_peaks(engine, start, start + op[2] * HOUR + timedelta(minutes=op[3]))
        elif op[0] == "seats":
            _, pool, seats, at = op
            product, license_type, _, _ = POOLS[pool]
            pool_id = catalog.read_catalog(engine).pool(product, license_type).id
            with db.write(engine) as conn:
                catalog.record_seats(conn, pool_id, seats, at=minute(at), origin="test")
        elif op[0] == "tick":
            now[0] += timedelta(minutes=op[1])
    check_window(engine, BASE - 2 * HOUR, 24, 1)
    check_hour_of_week(engine, BASE - 2 * HOUR, BASE + 30 * HOUR)
    check_peaks(engine, BASE - 2 * HOUR, BASE + 30 * HOUR)
    check_peaks(engine, BASE + timedelta(minutes=7), BASE + 30 * HOUR)
    rollup.refresh(engine)
    assert rolled_hours(engine) == brute_hours(engine, rollup_end())


def rollup_end() -> datetime:
    return clock.to_db(clock.now()).replace(minute=0, second=0, microsecond=0)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(planned=operations)
def test_rollup_reads_equal_brute_force_after_random_writes(monkeypatch, planned):
    engine = db.connect("sqlite://")
    try:
        run_operations(engine, monkeypatch, planned)
    finally:
        engine.dispose()


@pytest.mark.postgres
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(planned=operations)
def test_rollup_reads_equal_brute_force_on_postgresql(monkeypatch, pg_run_database, planned):
    from tests.helpers import fresh_pg_schema

    with fresh_pg_schema(pg_run_database) as url:
        engine = db.connect(url)
        try:
            run_operations(engine, monkeypatch, planned)
        finally:
            engine.dispose()


def test_writes_mark_their_pool_in_their_transaction(sqlite_engine, frozen):
    add_pools(sqlite_engine)
    product, license_type, _, _ = POOLS[0]
    rollup.refresh(sqlite_engine)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rollup_dirty_t)).scalar() == 0
    result = sessions.login(sqlite_engine, "ann", {product: license_type}, at=minute(30))
    sessions.end(sqlite_engine, result.session_id, at=minute(90))
    with sqlite_engine.connect() as conn:
        marks = conn.execute(sa.select(rollup_dirty_t.c.hour).order_by(rollup_dirty_t.c.id))
        assert [m.hour for m in marks] == [datetime(2026, 3, 2, 0), datetime(2026, 3, 2, 1)]
    done = rollup.refresh(sqlite_engine)
    assert done.rows == 2  # hours 00:00 and 01:00 have use
    assert rolled_hours(sqlite_engine) == brute_hours(sqlite_engine, rollup_end())
    assert rollup.refresh(sqlite_engine).hours == 0  # nothing new: nothing recomputed


def test_seat_seconds_are_the_time_in_use(sqlite_engine, frozen):
    add_pools(sqlite_engine)
    product, license_type, _, _ = POOLS[0]
    for user, start, stop in (("ann", 10, 70), ("ben", 20, 40), ("ann", 30, 50)):
        result = sessions.login(sqlite_engine, user, {product: license_type}, at=minute(start))
        sessions.end(sqlite_engine, result.session_id, at=minute(stop))
    rollup.refresh(sqlite_engine)
    with sqlite_engine.connect() as conn:
        frame = rollup.hours(conn, 0, analytics.HOUR_NS * 10**6)
    # hour 0: ann 10-60 (her two sessions are one seat), ben 20-40; hour 1: ann 60-70
    assert frame["seat_seconds"].tolist() == [(50 + 20) * 60.0, 10 * 60.0]
    assert frame["peak"].tolist() == [2, 1]


def backdated_writes(engine: Engine, seed: int, count: int, hours_back: int = 12) -> None:
    """`count` logins at random times of the last `hours_back` hours, most ended later."""
    rng = random.Random(seed)
    now = clock.to_db(clock.now())
    for _ in range(count):
        product, license_type, _, _ = POOLS[rng.randrange(len(POOLS))]
        at = now - timedelta(minutes=rng.randrange(hours_back * 60))
        result = sessions.login(engine, rng.choice(USERS), {product: license_type}, at=at)
        if result.session_id is not None and rng.random() < 0.8:
            sessions.end(engine, result.session_id, at=at + timedelta(minutes=rng.randrange(200)))


def assert_rollup_is_exact(engine: Engine) -> None:
    """After a refresh, every rolled-up hour and an hourly concurrency equal brute force."""
    rollup.refresh(engine)
    assert rolled_hours(engine) == brute_hours(engine, rollup_end())
    start = clock.now().replace(minute=0, second=0, microsecond=0) - 16 * HOUR
    check_window(engine, start, 17, 1)
    check_peaks(engine, start, clock.now())


@pytest.mark.slow
def test_concurrent_writers_and_readers_keep_the_rollup_exact(engine):
    add_pools(engine)
    failures: list[BaseException] = []
    done = threading.Event()

    def writer(seed: int) -> None:
        try:
            backdated_writes(engine, seed, 40)
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)

    def reader() -> None:
        try:
            while not done.is_set():
                rollup.refresh(engine)
                analytics.concurrency(engine, BASE, clock.now(), "1h")
        except BaseException as error:
            failures.append(error)

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert failures == []
    assert_rollup_is_exact(engine)


WRITER = """
import sys
from tests.test_rollup import backdated_writes
from licusage import analytics, db
from licusage.analytics import rollup
engine = db.connect(sys.argv[1])
print("ready", flush=True)
for seed in range(int(sys.argv[2]), 10**6):
    backdated_writes(engine, seed, 5)
    rollup.refresh(engine, rebuild=seed % 3 == 0)
"""


@pytest.mark.slow
def test_kill_9_in_the_middle_of_writes_and_refreshes_leaves_the_rollup_exact(engine, store_url):
    add_pools(engine)
    backdated_writes(engine, 0, 10)
    rollup.refresh(engine)
    rng = random.Random(12)
    for kill in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(1000 * (kill + 1))],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        written = count_holds(engine)
        while count_holds(engine) < written + rng.randrange(5, 40):  # wait for some writes
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        assert_rollup_is_exact(engine)


def count_holds(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(holds_t)).scalar_one())


def test_rollup_rebuild_command(sqlite_url, frozen):
    engine = db.connect(sqlite_url)
    try:
        add_pools(engine)
        backdated_writes(engine, 3, 30)
        rollup.refresh(engine)
        with db.write(engine) as conn:  # a roll-up gone wrong (edited by hand, say)
            conn.execute(sa.update(rollup_hours_t).values(peak=99))
            conn.execute(
                sa.insert(rollup_hours_t).values(
                    pool_id=1,
                    hour=datetime(2020, 1, 1),
                    peak=99,
                    seat_seconds=1.0,
                    denials=0,
                    low=0,
                    used_us=1_000_000,
                )
            )
        result = CliRunner().invoke(main, ["--db", sqlite_url, "rollup", "rebuild"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"rolled up {len(POOLS)} pools: ")
        assert rolled_hours(engine) == brute_hours(engine, rollup_end())
    finally:
        engine.dispose()


def test_rollup_rebuild_on_a_bad_store_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["--db", "nosuchdriver://x", "rollup", "rebuild"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("log_name", "importer", "around"),
    [
        ("flexlm/details.log", import_flexlm_log, datetime(2026, 3, 2, 20, tzinfo=UTC)),
        ("rlm/details.rl", import_rlm_log, datetime(2026, 12, 31, 18, tzinfo=UTC)),
    ],
)
def test_license_server_imports_keep_the_rollup_exact(
    sqlite_engine, frozen, tmp_path, log_name, importer, around
):
    """A log imported in two parts, the roll-up refreshed in between: the second part's
    check-ins release holds the first part left open, in hours already rolled up."""
    frozen.set(datetime(2027, 1, 5, tzinfo=UTC))
    lines = (FIXTURES / log_name).read_text().splitlines(keepends=True)
    log = tmp_path / Path(log_name).name
    for cut in (len(lines) // 2, len(lines)):
        log.write_text("".join(lines[:cut]))
        importer(sqlite_engine, [str(log)], server="lic1")
        rollup.refresh(sqlite_engine)
        assert rolled_hours(sqlite_engine) == brute_hours(sqlite_engine, rollup_end())
        check_window(sqlite_engine, around, 12, 1)


def test_a_reader_reads_on_when_the_store_cannot_take_its_refresh(sqlite_url, frozen, monkeypatch):
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    engine = db.connect(sqlite_url)
    try:
        add_pools(engine)
        product, license_type, _, _ = POOLS[0]
        for user, start in (("ann", 30), ("ben", 100), ("cat", 130)):
            result = sessions.login(engine, user, {product: license_type}, at=minute(start))
            sessions.end(engine, result.session_id, at=minute(start + 45))
        other = sqlite3.connect(sa.make_url(sqlite_url).database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process is writing, for longer than we wait
        try:
            check_window(engine, BASE, 10, 1)
            with engine.connect() as conn:
                marks = conn.execute(sa.select(sa.func.count()).select_from(rollup_dirty_t))
                assert marks.scalar() > 0  # not refreshed: the holds were read instead
        finally:
            other.rollback()
            other.close()
        check_window(engine, BASE, 10, 1)  # and refreshed now
        with engine.connect() as conn:
            marks = conn.execute(sa.select(sa.func.count()).select_from(rollup_dirty_t))
            assert marks.scalar() == 0
    finally:
        engine.dispose()
