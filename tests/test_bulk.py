"""The large-store generator: its counts, its seat rules, and that the store stays usable."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from licusage import bulk, catalog, db, models, queries, sessions
from licusage.analytics import intervals
from licusage.errors import InvalidInput

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SMALL = {"users": 300, "active": 900, "history": 12_000, "days": 30, "now": NOW}


def _reference_admit(start, end, user, seats):
    """First come, first served, one request at a time, in plain Python."""
    order = sorted(range(len(start)), key=lambda i: (user[i], start[i]))
    groups: list[list[int]] = []  # request indexes per occupancy interval
    reach = None
    for i in order:
        if groups and user[groups[-1][0]] == user[i] and start[i] < reach:
            groups[-1].append(i)
            reach = max(reach, end[i])
        else:
            groups.append([i])
            reach = end[i]
    spans = [(min(start[i] for i in g), max(end[i] for i in g), user[g[0]], g) for g in groups]
    admitted = [False] * len(start)
    releases: list[int] = []
    for begin, finish, _, members in sorted(spans, key=lambda s: (s[0], s[2])):
        while releases and releases[0] <= begin:
            heapq.heappop(releases)
        if len(releases) < seats:
            heapq.heappush(releases, finish)
            for i in members:
                admitted[i] = True
    return admitted


@pytest.mark.parametrize("seed", range(12))
def test_admit_matches_a_one_by_one_simulation(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 400))
    start = rng.integers(0, 500, count)
    length = rng.integers(1, 80, count)
    end = np.where(rng.random(count) < 0.1, bulk.OPEN, start + length)
    user = rng.integers(0, int(rng.integers(1, 60)), count)
    seats = int(rng.integers(1, 25))
    got = bulk.admit(start, end, user, seats)
    assert got.tolist() == _reference_admit(start.tolist(), end.tolist(), user.tolist(), seats)


def test_admit_never_exceeds_the_seats_and_admits_all_when_they_fit():
    rng = np.random.default_rng(7)
    start = rng.integers(0, 10_000, 5_000)
    end = start + rng.integers(1, 3_000, 5_000)
    user = rng.integers(0, 400, 5_000)
    ok = bulk.admit(start, end, user, 30)
    assert 0 < ok.sum() < len(ok)
    assert _peak_distinct_users(start[ok], end[ok], user[ok]) <= 30
    assert bulk.admit(start, end, user, 400).all()


def test_one_merge_joins_touching_intervals_unless_told_not_to():
    """analytics' merge is the one interval merge; admission asks it to keep touching ones apart."""
    user = np.array([1, 1, 1, 2])
    start = np.array([0, 10, 15, 10])
    end = np.array([10, 20, 30, 20])
    _, first, key, s, e = intervals.merge(user, start, end)
    assert (key.tolist(), s.tolist(), e.tolist()) == ([1, 2], [0, 10], [30, 20])
    assert first.tolist() == [True, False, False, True]
    _, first, key, s, e = intervals.merge(user, start, end, touching=False)
    assert (key.tolist(), s.tolist(), e.tolist()) == ([1, 1, 2], [0, 10, 10], [10, 30, 20])
    assert first.tolist() == [True, True, False, True]


def _peak_distinct_users(start, end, user) -> int:
    """Most distinct users holding at once (half-open intervals, releases before grants)."""
    frame = pd.DataFrame({"start": start, "end": end, "user": user}).sort_values(["user", "start"])
    merged = []
    for _, group in frame.groupby("user"):
        reach = None
        for s, e in zip(group["start"], group["end"], strict=True):
            if reach is not None and s < reach:
                merged[-1][1] = max(merged[-1][1], e)
                reach = merged[-1][1]
            else:
                merged.append([s, e])
                reach = e
    events = sorted([(s, 1) for s, _ in merged] + [(e, -1) for _, e in merged])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def _holds(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(
            sa.text(
                "SELECT h.session_id, h.pool_id, h.user_name, h.granted_at, h.released_at,"
                " s.started_at, s.ended_at, s.user_name AS session_user"
                " FROM session_licenses h JOIN sessions s ON s.id = h.session_id"
            ),
            conn,
        )
    for column in ("granted_at", "released_at", "started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


def test_small_store_follows_the_seat_rules(engine):
    summary = bulk.generate_large(engine, **SMALL)
    assert summary.sessions == SMALL["history"] + SMALL["active"]
    assert summary.active_sessions == SMALL["active"]
    usage = queries.session_usage(engine)
    assert len(usage) == SMALL["active"]
    holds = _holds(engine)
    assert len(holds) == summary.holds
    assert (holds["user_name"] == holds["session_user"]).all()
    assert (holds["granted_at"] == holds["started_at"]).all()
    assert holds["released_at"].isna().equals(holds["ended_at"].isna())
    closed = holds["released_at"].notna()
    assert (holds["released_at"][closed] == holds["ended_at"][closed]).all()
    cat = catalog.read_catalog(engine)
    with engine.connect() as conn:
        named = set(conn.execute(sa.text("SELECT pool_id, user_name FROM named_assignments")))
        denials = conn.execute(sa.text("SELECT count(*) FROM denials")).scalar_one()
    assert denials == summary.denials
    for pool in cat.pools:
        mine = holds[holds["pool_id"] == pool.id]
        assert len(mine), pool
        if pool.kind == "named":
            assert set(zip(mine["pool_id"], mine["user_name"], strict=True)) <= named
            continue
        granted = mine["granted_at"].to_numpy("datetime64[us]").astype(np.int64)
        released = mine["released_at"].to_numpy("datetime64[us]")
        end = np.where(np.isnat(released), bulk.OPEN, released.astype(np.int64))
        assert _peak_distinct_users(granted, end, mine["user_name"].to_numpy()) <= pool.seats


def test_store_stays_usable_after_the_bulk_load(engine, frozen):
    bulk.generate_large(engine, users=50, active=40, history=500, days=10, now=NOW)
    with engine.connect() as conn:
        if db.is_sqlite(conn):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        inspector = sa.inspect(conn)
        names = {
            ix["name"]
            for table in ("sessions", "session_licenses", "denials")
            for ix in inspector.get_indexes(table)
        }
        foreign_keys = inspector.get_foreign_keys("session_licenses")
    declared = {
        ix.name
        for table in (models.sessions_t, models.holds_t, models.denials_t)
        for ix in table.indexes
    }
    assert declared <= names
    assert len(foreign_keys) == 4
    result = sessions.login(engine, "someone.new", {"Reports Only": "Concurrent User"})
    assert result.session_id is not None
    with engine.connect() as conn:
        top = conn.execute(sa.text("SELECT max(id) FROM sessions")).scalar_one()
    assert result.session_id == top


def test_same_arguments_give_the_same_store(tmp_path):
    dumps = []
    for name in ("a", "b"):
        engine = db.connect(f"sqlite:///{tmp_path / name}.sqlite")
        bulk.generate_large(engine, users=40, active=30, history=400, days=7, seed=3, now=NOW)
        with engine.connect() as conn:
            dumps.append(
                [
                    conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2")).all()
                    for table in ("sessions", "session_licenses", "denials")
                ]
            )
        engine.dispose()
    assert dumps[0] == dumps[1]


def test_refuses_a_store_with_sessions_and_bad_counts(sqlite_engine):
    with pytest.raises(InvalidInput):
        bulk.generate_large(sqlite_engine, users=0)
    with pytest.raises(InvalidInput):
        bulk.generate_large(sqlite_engine, history=-1)
    with pytest.raises(InvalidInput):
        bulk.generate_large(sqlite_engine, days=True)
    bulk.generate_large(sqlite_engine, users=20, active=5, history=50, days=3, now=NOW)
    with pytest.raises(InvalidInput, match="already holds sessions"):
        bulk.generate_large(sqlite_engine, users=20, active=5, history=50, days=3, now=NOW)


def test_cli_demo_writes_a_large_store(tmp_path):
    from click.testing import CliRunner

    from licusage.cli import main

    url = f"sqlite:///{tmp_path / 'big.sqlite'}"
    args = ["demo", "--db", url, "--users", "60", "--active", "50", "--history", "700"]
    result = CliRunner().invoke(main, [*args, "--days", "20"])
    assert result.exit_code == 0, result.output
    assert "750 sessions (50 active)" in result.output
    again = CliRunner().invoke(main, [*args, "--days", "20"])
    assert again.exit_code == 2
    assert "already holds" in again.output
