"""Login rules (named, concurrent, expiry, denials), touch and end."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from licusage import catalog, clock, sessions
from licusage.errors import InvalidInput, UnknownLicenseType, UnknownProduct
from licusage.models import audit_t, denials_t, holds_t, sessions_t

CM = "Case Management"
RO = "Reports Only"
CONC = {CM: "Concurrent User"}


def _rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where)).mappings().all()


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


# --- named pools -------------------------------------------------------------------------------


def test_named_pool_grants_only_assigned_users(engine, frozen):
    catalog.add_pool(engine, CM, "Named User", 2)
    catalog.assign_named(engine, CM, "alice")
    granted = sessions.login(engine, "alice", {CM: "Named User"}, host="ws-1")
    assert granted.ok
    assert granted.granted == {CM: "Named User"}
    refused = sessions.login(engine, "bob", {CM: "Named User"}, host="ws-2")
    assert refused.session_id is None
    assert refused.denied == {CM: sessions.NOT_NAMED}
    (denial,) = _rows(engine, denials_t)
    assert (denial["user_name"], denial["host"], denial["reason"]) == (
        "bob",
        "ws-2",
        sessions.NOT_NAMED,
    )
    assert denial["at"] == clock.current_db_time()


def test_named_users_are_matched_by_identity(engine):
    catalog.add_pool(engine, CM, "Named User", 2)
    catalog.assign_named(engine, CM, "alice")
    assert sessions.login(engine, "Alice ", {CM: "Named User"}).ok  # one person (issue 15)
    assert not sessions.login(engine, "alicia", {CM: "Named User"}).ok


# --- concurrent pools --------------------------------------------------------------------------


def test_concurrent_pool_admits_at_most_seats_distinct_users(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 2)
    assert sessions.login(engine, "alice", CONC).ok
    assert sessions.login(engine, "bob", CONC).ok
    third = sessions.login(engine, "carol", CONC)
    assert third.session_id is None
    assert third.denied == {CM: sessions.POOL_FULL}
    assert _count(engine, denials_t) == 1
    assert _count(engine, sessions_t) == 2


def test_a_second_session_of_a_user_reuses_the_seat(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 1)
    first = sessions.login(engine, "alice", CONC)
    second = sessions.login(engine, "alice", CONC, host="laptop")
    assert first.ok
    assert second.ok
    assert first.session_id != second.session_id
    assert not sessions.login(engine, "bob", CONC).ok


def test_ending_a_session_frees_the_seat(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 1)
    first = sessions.login(engine, "alice", CONC)
    assert not sessions.login(engine, "bob", CONC).ok
    assert first.session_id is not None
    sessions.end(engine, first.session_id)
    assert sessions.login(engine, "bob", CONC).ok


def test_the_seat_stays_taken_while_another_session_of_the_user_holds_it(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 1)
    first = sessions.login(engine, "alice", CONC)
    sessions.login(engine, "alice", CONC)
    assert first.session_id is not None
    sessions.end(engine, first.session_id)
    assert not sessions.login(engine, "bob", CONC).ok


def test_an_expired_pool_grants_nothing(engine, frozen):
    catalog.add_pool(engine, CM, "Seasonal", 10, expires_at=frozen.now + timedelta(hours=1))
    assert sessions.login(engine, "alice", {CM: "Seasonal"}).ok
    frozen.advance(hours=1)
    expired = sessions.login(engine, "bob", {CM: "Seasonal"})
    assert expired.denied == {CM: sessions.POOL_EXPIRED}
    assert [d["reason"] for d in _rows(engine, denials_t)] == [sessions.POOL_EXPIRED]


def test_partly_granted_login_reports_both_halves(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 5)
    catalog.add_pool(engine, RO, "Named User", 1)
    result = sessions.login(engine, "alice", {CM: "Concurrent User", RO: "Named User"})
    assert result.session_id is not None
    assert result.granted == {CM: "Concurrent User"}
    assert result.denied == {RO: sessions.NOT_NAMED}
    assert not result.ok
    holds = _rows(engine, holds_t)
    assert [(h["session_id"], h["user_name"]) for h in holds] == [(result.session_id, "alice")]
    assert _count(engine, denials_t) == 1


def test_a_login_asking_for_nothing_still_opens_a_session(engine):
    result = sessions.login(engine, "alice", {})
    assert result.ok
    assert _count(engine, sessions_t) == 1


@pytest.mark.parametrize(
    ("licenses", "error"),
    [
        ({"Nope": "Concurrent User"}, UnknownProduct),
        ({CM: "Platinum"}, UnknownLicenseType),
        ({CM: "Concurrent User", "Nope": "Named User"}, UnknownProduct),
        (["Case Management"], InvalidInput),
    ],
)
def test_unknown_product_or_type_raises_and_records_nothing(sqlite_engine, licenses, error):
    catalog.add_pool(sqlite_engine, CM, "Concurrent User", 5)
    with pytest.raises(error):
        sessions.login(sqlite_engine, "alice", licenses)
    assert _count(sqlite_engine, sessions_t) == 0
    assert _count(sqlite_engine, denials_t) == 0
    assert _count(sqlite_engine, holds_t) == 0


@pytest.mark.parametrize("user", ["", "  ", None, 42, "nul\x00", "x" * 201])
def test_login_refuses_a_bad_user_name(sqlite_engine, user):
    catalog.add_pool(sqlite_engine, CM, "Concurrent User", 5)
    with pytest.raises(InvalidInput):
        sessions.login(sqlite_engine, user, CONC)
    assert _count(sqlite_engine, sessions_t) == 0


def test_concurrent_logins_never_over_allocate(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 3)
    users = [f"user{i}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda u: sessions.login(engine, u, CONC), users))
    assert sum(r.ok for r in results) == 3
    assert sum(r.denied == {CM: sessions.POOL_FULL} for r in results) == 9
    with engine.connect() as conn:
        holders = conn.execute(
            sa.select(sa.func.count(sa.distinct(holds_t.c.user_name))).where(
                holds_t.c.released_at.is_(None)
            )
        ).scalar_one()
    assert holders == 3
    assert _count(engine, denials_t) == 9


# --- touch and end -----------------------------------------------------------------------------


def test_touch_moves_last_activity_forward_only(engine, frozen):
    catalog.add_pool(engine, CM, "Concurrent User", 5)
    session_id = sessions.login(engine, "alice", CONC).session_id
    assert session_id is not None
    later = frozen.advance(minutes=30)
    assert sessions.touch(engine, session_id) is True
    assert sessions.touch(engine, session_id, at=later - timedelta(minutes=20)) is True
    (row,) = _rows(engine, sessions_t)
    assert row["last_activity"] == clock.to_db(later)


def test_touch_of_an_ended_or_unknown_session_is_false(engine):
    session_id = sessions.login(engine, "alice", {}).session_id
    assert session_id is not None
    sessions.end(engine, session_id)
    assert sessions.touch(engine, session_id) is False
    assert sessions.touch(engine, 999) is False
    with pytest.raises(InvalidInput):
        sessions.touch(engine, "1")  # type: ignore[arg-type]


def test_end_never_deletes_releases_licenses_and_is_idempotent(engine, frozen):
    catalog.add_pool(engine, CM, "Concurrent User", 5)
    catalog.add_pool(engine, RO, "Concurrent User", 5)
    session_id = sessions.login(engine, "alice", {CM: "Concurrent User", RO: "Concurrent User"})
    sid = session_id.session_id
    assert sid is not None
    ended_at = frozen.advance(hours=2)
    assert sessions.end(engine, sid) is True
    (row,) = _rows(engine, sessions_t)
    assert row["ended_at"] == clock.to_db(ended_at)
    assert (row["end_reason"], row["ended_by"]) == ("user_logout", "alice")
    holds = _rows(engine, holds_t)
    assert len(holds) == 2
    assert {h["released_at"] for h in holds} == {clock.to_db(ended_at)}
    frozen.advance(hours=1)
    assert sessions.end(engine, sid) is False  # idempotent: nothing moves
    (again,) = _rows(engine, sessions_t)
    assert again["ended_at"] == clock.to_db(ended_at)
    assert _count(engine, audit_t) == 0  # a user's own logout is not an admin action


def test_end_with_another_reason_is_audited(engine):
    sid = sessions.login(engine, "alice", {}).session_id
    assert sid is not None
    sessions.end(engine, sid, reason="crashed", actor="watchdog")
    (event,) = _rows(engine, audit_t)
    assert (event["actor"], event["reason"], event["session_id"]) == ("watchdog", "crashed", sid)


def test_end_of_an_unknown_session_raises(engine):
    with pytest.raises(InvalidInput, match="no session"):
        sessions.end(engine, 12345)
    with pytest.raises(InvalidInput):
        sessions.end(engine, True)  # type: ignore[arg-type]


def test_session_ids_from_numpy_are_accepted(engine):
    import numpy as np

    sid = sessions.login(engine, "alice", {}).session_id
    assert sid is not None
    assert sessions.end(engine, np.int64(sid)) is True  # type: ignore[arg-type]
