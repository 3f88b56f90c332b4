"""The idle policy on a schedule (licusage.policy), with per-pool idle limits."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import actions, catalog, policy, queries, sessions
from licusage.errors import InvalidInput
from licusage.models import audit_t, sessions_t
from tests.helpers import require, wait_until

CM, RO = "Case Management", "Reports Only"
CONCURRENT_USER = catalog.CONCURRENT_USER


@pytest.fixture
def store(engine, frozen):
    """Reports Only has its own 30-minute idle limit; Case Management has none."""
    catalog.add_pool(engine, CM, CONCURRENT_USER, 50)
    catalog.add_pool(engine, RO, CONCURRENT_USER, 50, idle_limit=30 * 60)
    ids = {}
    for user, licenses in [
        ("cm-only", {CM: CONCURRENT_USER}),
        ("ro-only", {RO: CONCURRENT_USER}),
        ("both", {CM: CONCURRENT_USER, RO: CONCURRENT_USER}),
        ("fresh", {RO: CONCURRENT_USER}),
    ]:
        ids[user] = sessions.login(engine, user, licenses).session_id
    frozen.advance(minutes=45)
    sessions.touch(engine, ids["fresh"])
    return engine, ids


def _end_reasons(engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(sessions_t.c.user_name, sessions_t.c.end_reason)).all())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every": timedelta(0)},
        {"every": timedelta(milliseconds=10)},
        {"every": 60},
        {"every": timedelta(minutes=5), "idle_over": timedelta(0)},
        {"every": timedelta(minutes=5), "idle_over": timedelta(hours=-1)},
        {"every": timedelta(minutes=5), "idle_over": "8h"},
        {"every": timedelta(minutes=5), "actor": ""},
        {"every": timedelta(minutes=5), "actor": "x\x00"},
    ],
)
def test_policy_refuses_bad_settings(kwargs):
    with pytest.raises(InvalidInput):
        policy.IdlePolicy(**kwargs)


def test_next_run():
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    every = timedelta(minutes=5)
    assert policy.next_run(None, every, now) == now
    assert policy.next_run(now - timedelta(minutes=2), every, now) == now + timedelta(minutes=3)
    assert policy.next_run(now - timedelta(hours=1), every, now) == now  # overran: at once


def test_pool_limits_apply_without_a_default(store):
    engine, ids = store
    reaper = policy.IdleReaper(
        engine.url.render_as_string(hide_password=False),
        policy.IdlePolicy(every=timedelta(minutes=5)),
    )
    result = reaper.run_once()
    assert result is not None
    assert set(result.logged_out) == {ids["ro-only"], ids["both"]}
    assert _end_reasons(engine) == {
        "cm-only": None,
        "ro-only": "idle_timeout",
        "both": "idle_timeout",
        "fresh": None,
    }
    assert reaper.run_once().logged_out == ()  # nothing left to do
    assert (reaper.runs, reaper.ended) == (2, 2)
    reaper.stop()


def test_every_ended_session_is_audited_as_idle_timeout(store):
    engine, ids = store
    result = actions.reap_idle(engine, timedelta(minutes=40), actor="policy")
    assert set(result.logged_out) == {ids["cm-only"], ids["ro-only"], ids["both"]}
    log = queries.audit_log(engine)
    assert len(log) == 3
    assert set(log["reason"]) == {"idle_timeout"}
    assert set(log["actor"]) == {"policy"}
    both = log[log["session_id"] == ids["both"]].iloc[0]
    assert json.loads(both["detail"])["licenses"] == {CM: CONCURRENT_USER, RO: CONCURRENT_USER}


def test_reaper_thread_reaps_on_schedule_and_stops(store):
    engine, _ = store
    reaper = policy.start_reaper(
        engine.url.render_as_string(hide_password=False),
        every=timedelta(seconds=1),
        idle_over=timedelta(minutes=40),
    )
    try:
        wait_until(lambda: reaper.runs >= 2, timeout=15)
    finally:
        reaper.stop()
    assert not reaper.is_alive()
    assert reaper.ended == 3
    assert _end_reasons(engine)["fresh"] is None


def test_reaper_survives_a_store_that_is_down(frozen):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    reaper = policy.start_reaper(url, every=timedelta(seconds=1), idle_over=timedelta(hours=1))
    try:
        wait_until(lambda: reaper.last_error is not None, timeout=15)
        assert reaper.is_alive()
        assert reaper.runs == 0
        assert "cannot use the store" in reaper.last_error
    finally:
        reaper.stop()
    assert not reaper.is_alive()


def test_reapers_on_several_hosts_end_each_session_once(store, store_url):
    engine, ids = store
    catalog.add_pool(engine, CM, CONCURRENT_USER, 400)
    bulk = [
        sessions.login(
            engine, f"bulk{n}", {CM: CONCURRENT_USER}, at=datetime(2026, 3, 1)
        ).session_id
        for n in range(300)
    ]
    every, over = timedelta(minutes=5), timedelta(hours=8)
    reapers = [
        policy.IdleReaper(store_url, policy.IdlePolicy(every, over, actor=f"host{i}"))
        for i in range(4)
    ]
    barrier = threading.Barrier(len(reapers))
    results: list = []

    def reap(reaper: policy.IdleReaper) -> None:
        barrier.wait()
        results.append(reaper.run_once())
        reaper.stop()

    threads = [threading.Thread(target=reap, args=(r,)) for r in reapers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = [i for result in results for i in result.logged_out]
    assert len(ended) == len(set(ended))
    assert set(ended) == {*bulk, ids["ro-only"], ids["both"]}
    with engine.connect() as conn:
        per_session = Counter(
            conn.execute(
                sa.select(audit_t.c.session_id).where(audit_t.c.reason == "idle_timeout")
            ).scalars()
        )
    assert set(per_session) == set(ended)
    assert set(per_session.values()) == {1}


def test_serve_has_the_in_server_policy_options():
    from licusage.cli import main

    serve = main.commands.get("serve")
    require(serve is not None, "licusage serve does not exist yet")
    result = CliRunner().invoke(main, ["serve", "--help"])
    require("--reap-every" in result.output, "licusage serve has no --reap-every yet")
    assert "--idle-over" in result.output
    result = CliRunner().invoke(main, ["serve", "--reap-every", "0s"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
