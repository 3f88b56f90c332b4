"""The demo generator: deterministic, and the store it writes obeys the seat rules throughout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from licusage import actions, db, demo, queries
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
