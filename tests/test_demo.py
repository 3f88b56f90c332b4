"""The demo generator: deterministic, and the store it writes obeys the seat rules throughout."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import actions, clock, db, demo, queries
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.models import (
    CONCURRENT,
    NAMED,
    assignments_t,
    denials_t,
    holds_t,
    pools_t,
    sessions_t,
    types_t,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning: people are at work
USERS, DAYS = 80, 4


def dump(engine) -> dict[str, list]:
    """Every row of the tables the generator writes, in a stable order."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in (sessions_t, holds_t, denials_t, assignments_t)
        }


@pytest.fixture
def demo_store(engine, frozen):
    summary = demo.generate(engine, users=USERS, days=DAYS, seed=7, now=NOW)
    return engine, summary


def test_same_seed_and_now_give_the_same_store(tmp_path):
    dumps = []
    for name in ("a", "b"):
        engine = db.connect(f"sqlite:///{tmp_path / name}.sqlite")
        demo.generate(engine, users=40, days=3, seed=11, now=NOW)
        dumps.append(dump(engine))
        engine.dispose()
    assert dumps[0] == dumps[1]
    assert dumps[0]["sessions"]
    other = db.connect(f"sqlite:///{tmp_path / 'c'}.sqlite")
    demo.generate(other, users=40, days=3, seed=12, now=NOW)
    assert dump(other) != dumps[0]
    other.dispose()


def test_summary_matches_the_store(demo_store):
    engine, summary = demo_store
    with engine.connect() as conn:

        def count(table, *where):
            return conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()

        assert summary.sessions == count(sessions_t)
        assert summary.active_sessions == count(sessions_t, sessions_t.c.ended_at.is_(None))
        assert summary.holds == count(holds_t)
        assert summary.denials == count(denials_t)
    assert summary.users == USERS
    assert summary.pools == len(queries.pool_usage(engine)) == 7


def test_no_concurrent_pool_ever_has_more_users_than_seats(demo_store):
    """At every grant (the only moments the count can rise) count distinct holders in SQL."""
    engine, _ = demo_store
    h1, h2 = holds_t.alias("h1"), holds_t.alias("h2")
    holders = sa.func.count(sa.distinct(h2.c.user_name))
    query = (
        sa.select(h1.c.pool_id, h1.c.granted_at, holders.label("holders"), pools_t.c.seats)
        .select_from(
            h1.join(
                h2,
                sa.and_(
                    h2.c.pool_id == h1.c.pool_id,
                    h2.c.granted_at <= h1.c.granted_at,
                    sa.or_(h2.c.released_at.is_(None), h2.c.released_at > h1.c.granted_at),
                ),
            )
            .join(pools_t, pools_t.c.id == h1.c.pool_id)
            .join(types_t, types_t.c.id == pools_t.c.license_type_id)
        )
        .where(types_t.c.kind == CONCURRENT)
        .group_by(h1.c.pool_id, h1.c.granted_at, pools_t.c.seats)
    )
    with engine.connect() as conn:
        peaks = conn.execute(query).all()
    assert peaks, "the demo grants concurrent licenses"
    over = [row for row in peaks if row.holders > row.seats]
    assert over == []
    # the pools do run full at some moment (that is what the denials are about)
    assert any(row.holders == row.seats for row in peaks)


def test_only_assigned_users_hold_named_licenses(demo_store):
    engine, _ = demo_store
    query = (
        sa.select(sa.func.count())
        .select_from(
            holds_t.join(pools_t, pools_t.c.id == holds_t.c.pool_id)
            .join(types_t, types_t.c.id == pools_t.c.license_type_id)
            .outerjoin(
                assignments_t,
                sa.and_(
                    assignments_t.c.pool_id == holds_t.c.pool_id,
                    assignments_t.c.user_name == holds_t.c.user_name,
                ),
            )
        )
        .where(types_t.c.kind == NAMED, assignments_t.c.user_name.is_(None))
    )
    named_holds = (
        sa.select(sa.func.count())
        .select_from(holds_t.join(pools_t, pools_t.c.id == holds_t.c.pool_id))
        .join(types_t, types_t.c.id == pools_t.c.license_type_id)
        .where(types_t.c.kind == NAMED)
    )
    with engine.connect() as conn:
        assert conn.execute(query).scalar_one() == 0
        assert conn.execute(named_holds).scalar_one() > 0
        # named pools never have more names than seats
        over = conn.execute(
            sa.select(assignments_t.c.pool_id)
            .join(pools_t, pools_t.c.id == assignments_t.c.pool_id)
            .group_by(assignments_t.c.pool_id, pools_t.c.seats)
            .having(sa.func.count() > pools_t.c.seats)
        ).all()
        assert over == []


def test_denials_happen_when_pools_run_full(demo_store):
    engine, summary = demo_store
    assert summary.denials > 0
    with engine.connect() as conn:
        reasons = set(conn.execute(sa.select(denials_t.c.reason).distinct()).scalars())
    assert reasons == {"pool_full"}


def test_history_is_consistent(demo_store):
    """Ended sessions released their licenses then; open ones still hold them; times ordered."""
    engine, _ = demo_store
    s = sessions_t
    with engine.connect() as conn:
        bad_order = conn.execute(
            sa.select(sa.func.count()).where(
                sa.or_(
                    s.c.last_activity < s.c.started_at,
                    s.c.ended_at < s.c.last_activity,
                    s.c.last_activity > NOW.replace(tzinfo=None),
                )
            )
        ).scalar_one()
        mismatched = conn.execute(
            sa.select(sa.func.count())
            .select_from(holds_t.join(s, s.c.id == holds_t.c.session_id))
            .where(
                sa.or_(
                    holds_t.c.released_at != s.c.ended_at,
                    sa.and_(holds_t.c.released_at.is_(None), s.c.ended_at.is_not(None)),
                    sa.and_(holds_t.c.released_at.is_not(None), s.c.ended_at.is_(None)),
                    holds_t.c.user_name != s.c.user_name,
                )
            )
        ).scalar_one()
    assert bad_order == 0
    assert mismatched == 0


def test_some_sessions_are_open_and_some_sit_idle(demo_store, frozen):
    engine, _ = demo_store
    frozen.set(NOW)
    active = queries.session_usage(engine)
    assert len(active) > 0
    assert set(queries.session_usage(engine, user="a")["user"]) <= set(active["user"])
    # a reap with a short limit has something to do: idle sessions were left open
    assert actions.reap_idle(engine, timedelta(minutes=20), dry_run=True).logged_out


def test_demo_refuses_a_store_with_sessions(demo_store):
    engine, _ = demo_store
    before = dump(engine)
    with pytest.raises(InvalidInput, match="already holds"):
        demo.generate(engine, users=10, days=1, now=NOW)
    assert dump(engine) == before


@pytest.mark.parametrize(
    "kwargs", [{"users": 0}, {"days": 0}, {"seed": -1}, {"users": "10"}, {"days": True}]
)
def test_demo_refuses_bad_sizes(sqlite_engine, kwargs):
    with pytest.raises(InvalidInput):
        demo.generate(sqlite_engine, **kwargs)
    assert dump(sqlite_engine)["sessions"] == []


def test_user_names_are_distinct():
    names = demo.user_names(5000)
    assert len(set(names)) == 5000


# --- a customer-service centre: live at any hour ------------------------------------------------

# (now, active sessions of the default demo: 200 users, 14 days, seed 0) at moments a newcomer
# may well try it: the counts are pinned, so a change to the model shows here
PINNED = {
    "weekday noon": (datetime(2026, 3, 4, 12, 0, tzinfo=UTC), 74),
    "Sunday 03:00": (datetime(2026, 3, 8, 3, 0, tzinfo=UTC), 31),
    "New Year's Day": (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), 30),
}


@pytest.mark.parametrize("moment", list(PINNED))
def test_the_default_demo_has_live_sessions_at_pinned_moments(tmp_path, monkeypatch, moment):
    now, expected = PINNED[moment]
    engine = db.connect(f"sqlite:///{tmp_path / 'demo.sqlite'}")
    summary = demo.generate(engine, now=now)  # the defaults of `licusage demo`
    monkeypatch.setattr(clock, "now", lambda: now)
    active = queries.session_usage(engine)
    assert len(active) == summary.active_sessions == expected >= 20
    # some sessions sit idle for over an hour, some logins were denied
    assert len(queries.session_usage(engine, idle_over=timedelta(hours=1))) > 0
    assert summary.denials > 0
    engine.dispose()


def week_of_counts(monday: datetime) -> dict[datetime, int]:
    """Open sessions of a 200-user demo at half past every hour of the week from `monday`."""
    counts = {}
    for hour in range(7 * 24):
        now = monday + timedelta(hours=hour, minutes=30)
        counts[now] = len(demo.simulate(users=200, days=1, seed=0, now=now).open_sessions())
    return counts


@pytest.mark.parametrize(
    "monday",
    [datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 12, 28, tzinfo=UTC)],  # the 2nd: New Year
    ids=["March", "New Year"],
)
def test_every_hour_of_the_week_has_at_least_20_live_sessions(monday):
    counts = week_of_counts(monday)
    assert min(counts.values()) >= 20, min(counts.items(), key=lambda item: item[1])
    weekday = [n for at, n in counts.items() if at.weekday() < 5 and at.day != 1]
    weekend = [n for at, n in counts.items() if at.weekday() >= 5]
    # the peak (EMEA and the Americas overlap on a weekday) is far above the quietest hours
    assert max(weekday) >= 3 * min(counts.values())
    assert sum(weekday) / len(weekday) > 1.5 * sum(weekend) / len(weekend)


def test_staff_follow_the_sun_and_weekends_are_thinner():
    people = demo.staff(demo.user_names(200), random.Random(0))
    roles = Counter(p.role for p in people.values())
    assert roles == {"agent": 130, "back_office": 34, "supervisor": 20, "analyst": 16}
    agents = [p for p in people.values() if p.role == "agent"]
    assert {p.region.name for p in agents} == {"APAC", "EMEA", "Americas"}
    assert {p.shift for p in agents} == set(demo.SHIFTS)
    assert {p.shift for p in people.values() if p.role != "agent"} == {"office"}
    saturday, monday = datetime(2026, 3, 7), datetime(2026, 3, 9)
    new_year = datetime(2027, 1, 1)  # a Friday, staffed like a weekend
    assert not any(demo.is_day_off(p, monday) for p in people.values())
    for day in (saturday, new_year):
        on = [p for p in people.values() if not demo.is_day_off(p, day)]
        assert {p.role for p in on} == {"agent"}
        assert 0.6 * len(agents) <= len(on) <= 0.7 * len(agents)


def test_the_quick_tour_prints_rows(tmp_path, monkeypatch):
    """The README's quick tour, at 03:00 on a Sunday: the listing commands print sessions."""
    now = PINNED["Sunday 03:00"][0]
    monkeypatch.setattr(clock, "now", lambda: now)
    url = f"sqlite:///{tmp_path / 'tour.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(main, ["--db", url, "demo"]).exit_code == 0
    for args in (["sessions", "--user", "smith"], ["sessions", "--idle-over", "1h"]):
        result = runner.invoke(main, ["--db", url, *args])
        assert result.exit_code == 0, result.output
        count = int(result.stdout.strip().splitlines()[-1].split()[0])
        assert count > 0, result.stdout
        assert len(result.stdout.strip().splitlines()) == count + 3  # header, rule, rows, total


def test_clock_frozen_gives_the_clock_back():
    real = clock.now
    with clock.frozen(datetime(2026, 3, 2, 12, 0)) as moment:  # naive: taken as UTC
        assert moment == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        assert clock.now() == moment
    assert clock.now is real


def test_open_demo_is_read_as_of_its_now(monkeypatch):
    monkeypatch.setattr(clock, "now", clock.now)  # whatever open_demo freezes is undone after
    now, expected = PINNED["Sunday 03:00"]
    engine = demo.open_demo(now=now)
    assert clock.now() == now
    assert len(queries.session_usage(engine)) == expected  # the pinned count, at 03:00 Sunday
    assert engine.url.database.endswith("demo.sqlite")
