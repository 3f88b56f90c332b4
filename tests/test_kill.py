"""kill -9 in the middle of a bulk logout: every session is either still active or ended with
exactly one audit event; a logout is never partial (one transaction, on SQLite and PostgreSQL).

A real process runs ``actions.logout_sessions`` on 3,000 sessions and is killed with SIGKILL at
a random moment of it, 12 times per engine; the store is then read by this process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from licusage import actions, queries
from licusage.audit import END_SESSION
from licusage.models import audit_t, sessions_t
from tests.test_contention import add_sessions

pytestmark = pytest.mark.slow

BATCH = 3_000
KILLS = 12
LOGOUT = """
import sys
from licusage import actions, db
engine = db.connect(sys.argv[1])
ids = [int(i) for i in sys.argv[2].split(",")]
print("ready", flush=True)
actions.logout_sessions(engine, ids, actor="killed.admin")
print("done", flush=True)
"""


def _state(engine, ids: list[int]) -> tuple[int, int, int]:
    """(sessions ended, audit events of them, sessions ended without exactly one event)."""
    low, high = min(ids), max(ids)
    with engine.connect() as conn:
        ended = conn.execute(
            sa.select(sa.func.count())
            .select_from(sessions_t)
            .where(sessions_t.c.id.between(low, high), sessions_t.c.ended_at.is_not(None))
        ).scalar_one()
        events = dict(
            conn.execute(
                sa.select(audit_t.c.session_id, sa.func.count())
                .where(audit_t.c.session_id.between(low, high), audit_t.c.action == END_SESSION)
                .group_by(audit_t.c.session_id)
            ).all()
        )
        ended_ids = conn.execute(
            sa.select(sessions_t.c.id).where(
                sessions_t.c.id.between(low, high), sessions_t.c.ended_at.is_not(None)
            )
        ).scalars()
        unaudited = sum(1 for i in ended_ids if events.get(i) != 1)
    return ended, sum(events.values()), unaudited


def _start(store_url: str, ids: list[int]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", LOGOUT, store_url, ",".join(map(str, ids))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_kill_9_in_a_bulk_logout_never_leaves_it_partial(engine, store_url):
    ids = add_sessions(engine, BATCH * (KILLS + 1))
    batches = [ids[i * BATCH : (i + 1) * BATCH] for i in range(KILLS + 1)]
    # how long a whole logout takes here, now: the window the kills fall in
    whole = _start(store_url, batches[0])
    started = time.monotonic()
    assert whole.wait(timeout=600) == 0
    duration = time.monotonic() - started
    assert _state(engine, batches[0]) == (BATCH, BATCH, 0)
    rolled_back = committed = 0
    rng = random.Random(9)
    for batch in batches[1:]:
        process = _start(store_url, batch)
        time.sleep(rng.uniform(0, duration * 0.8))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        ended, events, unaudited = _state(engine, batch)
        assert (ended, events, unaudited) in ((0, 0, 0), (BATCH, BATCH, 0)), (ended, events)
        rolled_back += ended == 0
        committed += ended == BATCH
    print(
        f"kill -9 x{KILLS}: {rolled_back} rolled back, {committed} committed (logout {duration:.2f} s)"
    )
    assert rolled_back >= 1  # at least one kill fell inside the transaction
    # the store is usable after the kills: what was rolled back can be logged out now
    active = set(queries.session_usage(engine)["session_id"])
    rest = [i for i in ids if i in active][:10]
    assert actions.logout_sessions(engine, rest, "after.kills").logged_out == tuple(rest)
