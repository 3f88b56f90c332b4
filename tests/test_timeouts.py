"""PostgreSQL time-outs (issue 15, finding 7): a frozen backend, a held lock or a server that
never answers makes an operation fail with StoreUnavailable, in bounded time, changing
nothing."""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa

from licusage import actions, catalog, db, sessions
from licusage.db import Timeouts
from licusage.errors import StoreUnavailable
from tests.test_hostile import store_checksum

pytestmark = pytest.mark.postgres

CM, CONC = "Case Management", catalog.CONCURRENT_USER
SHORT = Timeouts(connect=2, statement=1, lock=0.5)


@pytest.fixture
def pg_store(pg_url) -> tuple[str, int]:
    engine = db.connect(pg_url)
    catalog.add_pool(engine, CM, CONC, 5)
    sid = sessions.login(engine, "alice", {CM: CONC}).session_id
    assert sid is not None
    engine.dispose()
    return pg_url, sid


def test_a_held_lock_fails_the_logout_in_bounded_time_and_changes_nothing(pg_store):
    url, sid = pg_store
    blocker = sa.create_engine(url)
    engine = db.connect(url, timeouts=SHORT)
    try:
        before = store_checksum(engine)
        with blocker.connect() as conn, conn.begin():
            # another transaction holds the pool row (a frozen client in mid-login)
            conn.exec_driver_sql("SELECT id FROM license_pools FOR UPDATE").all()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock"):
                actions.logout_sessions(engine, [sid], actor="admin")
            with pytest.raises(StoreUnavailable, match="lock"):
                sessions.login(engine, "bob", {CM: CONC})
            elapsed = time.monotonic() - started
        assert elapsed < 20
        assert store_checksum(engine) == before
        assert actions.logout_sessions(engine, [sid], actor="admin").logged_out == (sid,)
    finally:
        engine.dispose()
        blocker.dispose()


def test_a_frozen_statement_is_cancelled_and_rolled_back(pg_store):
    url, sid = pg_store
    setup = sa.create_engine(url)
    with setup.begin() as conn:  # the backend "freezes" on ending this session's row
        conn.exec_driver_sql(
            "CREATE FUNCTION freeze_backend() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(30); "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER freeze_backend BEFORE UPDATE ON session_licenses FOR EACH ROW "
            "EXECUTE FUNCTION freeze_backend()"
        )
    engine = db.connect(url, timeouts=SHORT)
    try:
        before = store_checksum(engine)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"statement timeout|canceling statement"):
            actions.logout_sessions(engine, [sid], actor="admin")
        assert time.monotonic() - started < 20
        assert store_checksum(engine) == before  # the session is still active, not half-ended
    finally:
        engine.dispose()
        setup.dispose()


def test_a_server_that_never_answers_is_unavailable_in_bounded_time():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does) and never says a word
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            db.connect(f"postgresql://postgres@127.0.0.1:{port}/licusage", timeouts=SHORT)
        assert time.monotonic() - started < 20
    finally:
        listener.close()


def test_timeouts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LICUSAGE_PG_LOCK_TIMEOUT", "0.5")
    monkeypatch.setenv("LICUSAGE_PG_STATEMENT_TIMEOUT", "0")
    assert Timeouts.from_env() == Timeouts(connect=10, statement=0, lock=0.5)
    monkeypatch.setenv("LICUSAGE_PG_CONNECT_TIMEOUT", "soon")
    with pytest.raises(StoreUnavailable, match="LICUSAGE_PG_CONNECT_TIMEOUT"):
        Timeouts.from_env()


def test_the_session_settings_are_applied(pg_url):
    engine = db.connect(pg_url, timeouts=Timeouts(connect=5, statement=7, lock=3))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "3s"
    finally:
        engine.dispose()
