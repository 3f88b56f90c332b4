"""logout_sessions, authorized_logout and reap_idle: what they end, audit and leave alone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from licusage import actions, catalog, clock, queries, sessions
from licusage.errors import InvalidInput, PermissionDenied
from licusage.models import audit_t, holds_t, sessions_t

CM, RO = "Case Management", "Reports Only"
CONC = "Concurrent User"


@pytest.fixture
def store(engine, frozen):
    """alice (CM + RO), bob (CM), carol (no license); erin's session already ended."""
    catalog.add_pool(engine, CM, CONC, 5)
    catalog.add_pool(engine, RO, CONC, 5)
    ids = {
        "alice": sessions.login(engine, "alice", {CM: CONC, RO: CONC}).session_id,
        "bob": sessions.login(engine, "bob", {CM: CONC}).session_id,
        "carol": sessions.login(engine, "carol", {}).session_id,
        "erin": sessions.login(engine, "erin", {CM: CONC}).session_id,
    }
    sessions.end(engine, ids["erin"])
    return engine, ids


def snapshot(engine) -> tuple:
    """Everything an action could change."""
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(sessions_t).order_by(sessions_t.c.id)).all(),
            conn.execute(
                sa.select(holds_t).order_by(holds_t.c.session_id, holds_t.c.product_id)
            ).all(),
            conn.execute(sa.select(audit_t).order_by(audit_t.c.id)).all(),
        )


def audit_events(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_t).order_by(audit_t.c.id)).mappings().all()
    return [dict(r) for r in rows]


def test_logout_reports_logged_out_already_ended_and_unknown(store, frozen):
    engine, ids = store
    result = actions.logout_sessions(
        engine, [ids["bob"], ids["alice"], ids["erin"], 999], actor="admin1"
    )
    assert result.logged_out == tuple(sorted([ids["alice"], ids["bob"]]))
    assert result.already_ended == (ids["erin"],)
    assert result.unknown == (999,)
    left = queries.session_usage(engine)
    assert list(left["user"]) == ["carol"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sessions_t).where(sessions_t.c.id.in_([ids["alice"], ids["bob"]]))
        ).mappings()
        for row in rows:
            assert (row["end_reason"], row["ended_by"]) == ("admin_logout", "admin1")
            assert row["ended_at"] == clock.current_db_time()


def test_logout_frees_the_licenses(store):
    engine, ids = store
    before = queries.pool_usage(engine).set_index("product")["in_use"].to_dict()
    actions.logout_sessions(engine, [ids["alice"]], actor="admin1")
    after = queries.pool_usage(engine).set_index("product")["in_use"].to_dict()
    assert (before[CM], before[RO]) == (2, 1)
    assert (after[CM], after[RO]) == (1, 0)


def test_one_audit_event_per_session_naming_actor_and_licenses(store):
    engine, ids = store
    actions.logout_sessions(
        engine, [ids["alice"], ids["carol"], ids["erin"]], actor="admin1", reason="stuck"
    )
    events = [e for e in audit_events(engine) if e["actor"] == "admin1"]
    assert sorted(e["session_id"] for e in events) == sorted([ids["alice"], ids["carol"]])
    by_session = {e["session_id"]: e for e in events}
    alice = by_session[ids["alice"]]
    assert (alice["action"], alice["user_name"], alice["reason"]) == (
        "end_session",
        "alice",
        "stuck",
    )
    assert json.loads(alice["detail"]) == {"licenses": {CM: CONC, RO: CONC}}
    assert json.loads(by_session[ids["carol"]]["detail"]) == {"licenses": {}}


def test_logout_is_idempotent(store):
    engine, ids = store
    actions.logout_sessions(engine, [ids["bob"]], actor="admin1")
    before = snapshot(engine)
    again = actions.logout_sessions(engine, [ids["bob"]], actor="admin2")
    assert again.logged_out == ()
    assert again.already_ended == (ids["bob"],)
    assert snapshot(engine) == before


MALFORMED = [
    (["1"], "admin1"),
    ([1.0], "admin1"),
    ([True], "admin1"),
    ([1, None], "admin1"),
    ("12", "admin1"),
    (None, "admin1"),
    (7, "admin1"),
    ([1], ""),
    ([1], "   "),
    ([1], None),
    ([1], "x" * 201),
    ([1], "nul\x00"),
]


def test_malformed_input_raises_value_error_and_changes_nothing(store):
    engine, _ = store
    before = snapshot(engine)
    for session_ids, actor in MALFORMED:
        with pytest.raises(ValueError):  # noqa: PT011 - InvalidInput is a ValueError
            actions.logout_sessions(engine, session_ids, actor)
    with pytest.raises(ValueError):  # noqa: PT011
        actions.logout_sessions(engine, [1], "admin1", reason="")
    assert snapshot(engine) == before


def test_a_malformed_id_anywhere_changes_nothing(store):
    engine, ids = store
    before = snapshot(engine)
    with pytest.raises(InvalidInput):
        actions.logout_sessions(engine, [ids["alice"], ids["bob"], "3"], actor="admin1")
    assert snapshot(engine) == before


def test_logout_is_one_transaction(store):
    """A failure while writing the audit rolls back the sessions ended before it."""
    engine, ids = store
    before = snapshot(engine)

    def fail_on_audit(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS"):
            raise RuntimeError("disk full (injected)")

    event.listen(engine, "before_cursor_execute", fail_on_audit)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            actions.logout_sessions(engine, [ids["alice"], ids["bob"]], actor="admin1")
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_audit)
    assert snapshot(engine) == before


def test_spare_own_leaves_the_actors_sessions_running(store):
    engine, ids = store
    result = actions.logout_sessions(
        engine, [ids["alice"], ids["bob"]], actor="alice", spare_own=True
    )
    assert result.spared == (ids["alice"],)
    assert result.logged_out == (ids["bob"],)


def test_authorized_logout_refuses_viewers_and_audits_the_attempt(store):
    engine, ids = store
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, [ids["bob"]], actor="viewer1", role=actions.VIEWER)
    assert set(queries.session_usage(engine)["user"]) == {"alice", "bob", "carol"}
    (refused,) = [e for e in audit_events(engine) if e["action"] == "logout_refused"]
    assert refused["actor"] == "viewer1"
    result = actions.authorized_logout(engine, [ids["bob"]], actor="root", role=actions.ADMIN)
    assert result.logged_out == (ids["bob"],)


# --- reaping -----------------------------------------------------------------------------------


def test_is_idle_and_effective_limit_are_plain_decisions(frozen):
    now = frozen.now
    assert actions.is_idle(now - timedelta(hours=3), now, timedelta(hours=2))
    assert not actions.is_idle(now - timedelta(hours=2), now, timedelta(hours=2))
    assert not actions.is_idle(now - timedelta(days=9), now, None)
    assert actions.effective_limit(timedelta(hours=8), [None, timedelta(hours=1)]) == timedelta(
        hours=1
    )
    assert actions.effective_limit(None, [None]) is None


@pytest.fixture
def idle_store(engine, frozen):
    """alice idle 3 h, bob idle 30 min, carol idle 90 min holding RO (pool idle limit 1 h)."""
    catalog.add_pool(engine, CM, CONC, 5)
    catalog.add_pool(engine, RO, CONC, 5, idle_limit=3600)
    now = frozen.now
    ids = {
        "alice": sessions.login(engine, "alice", {CM: CONC}, at=now - timedelta(hours=3)),
        "bob": sessions.login(engine, "bob", {CM: CONC}, at=now - timedelta(minutes=30)),
        "carol": sessions.login(engine, "carol", {RO: CONC}, at=now - timedelta(minutes=90)),
    }
    return engine, {name: r.session_id for name, r in ids.items()}


def test_reap_dry_run_changes_nothing(idle_store):
    engine, ids = idle_store
    before = snapshot(engine)
    result = actions.reap_idle(engine, timedelta(hours=2), dry_run=True)
    assert result.dry_run
    assert result.logged_out == tuple(sorted([ids["alice"], ids["carol"]]))
    assert result.idle[ids["alice"]] == timedelta(hours=3)
    assert snapshot(engine) == before


def test_reap_ends_idle_sessions_with_reason_and_audit(idle_store):
    engine, ids = idle_store
    result = actions.reap_idle(engine, timedelta(hours=2), actor="nightly")
    assert set(result.logged_out) == {ids["alice"], ids["carol"]}  # carol by her pool's 1 h
    assert list(queries.session_usage(engine)["user"]) == ["bob"]
    with engine.connect() as conn:
        ended = conn.execute(
            sa.select(sessions_t.c.end_reason, sessions_t.c.ended_by).where(
                sessions_t.c.ended_at.is_not(None)
            )
        ).all()
    assert set(ended) == {("idle_timeout", "nightly")}
    events = audit_events(engine)
    assert sorted(e["session_id"] for e in events) == sorted(result.logged_out)
    assert {(e["actor"], e["reason"]) for e in events} == {("nightly", "idle_timeout")}
    assert actions.reap_idle(engine, timedelta(hours=2)).logged_out == ()  # idempotent


def test_reap_without_a_default_applies_only_pool_limits(idle_store):
    engine, ids = idle_store
    assert actions.reap_idle(engine, None).logged_out == (ids["carol"],)


@pytest.mark.parametrize("limit", [timedelta(minutes=-1), 7200, "2h"])
def test_reap_refuses_a_bad_limit(sqlite_engine, limit):
    with pytest.raises(InvalidInput):
        actions.reap_idle(sqlite_engine, limit)


def test_reap_with_a_limit_longer_than_the_calendar_applies_only_pool_limits(idle_store):
    engine, ids = idle_store
    assert queries.session_usage(engine, idle_over=timedelta.max).empty
    assert actions.reap_idle(engine, timedelta.max).logged_out == (ids["carol"],)
    assert list(queries.session_usage(engine)["user"]) == ["alice", "bob"]


def test_each_logout_is_logged_with_actor_and_count(sqlite_engine, caplog):
    """What `licusage serve` shows on its console for every logout (INFO, logger licusage)."""
    catalog.add_pool(sqlite_engine, "Case Management", "Concurrent User", 5)
    ids = [
        sessions.login(sqlite_engine, user, {"Case Management": "Concurrent User"}).session_id
        for user in ("ann", "ben")
    ]
    with caplog.at_level("INFO", logger="licusage"):
        actions.logout_sessions(sqlite_engine, [*ids, 999], actor="alice.admin")
    (record,) = [r for r in caplog.records if r.name == "licusage.actions"]
    assert record.levelname == "INFO"
    assert record.getMessage() == (
        "logout by alice.admin (admin_logout): 2 sessions ended, 0 already ended, 1 unknown, "
        "0 spared"
    )
