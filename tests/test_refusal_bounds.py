"""A viewer cannot flood the audit trail (issue 15, finding 7): refused logouts are audited at
a bounded rate per viewer, each row of bounded size. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from licusage import actions, catalog, sessions
from licusage.errors import PermissionDenied
from licusage.models import audit_t

CM, CONC = "Case Management", catalog.CONCURRENT_USER


def _refusals(engine, actor: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_t.c.detail).where(
                audit_t.c.actor == actor, audit_t.c.action == "logout_refused"
            )
        ).scalars()
        return [json.loads(detail) for detail in rows]


def test_refused_logouts_are_audited_at_a_bounded_rate_per_viewer(engine, frozen):
    catalog.add_pool(engine, CM, CONC, 5)
    sid = sessions.login(engine, "alice", {CM: CONC}).session_id
    for _ in range(40):
        with pytest.raises(PermissionDenied):
            actions.authorized_logout(engine, [sid], actor="vic", role=actions.VIEWER)
        frozen.advance(seconds=0.5)
    assert len(_refusals(engine, "vic")) == actions.REFUSED_AUDIT_LIMIT
    # another viewer has a limit of its own; and a minute later vic is audited again
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, [sid], actor="val", role=actions.VIEWER)
    assert len(_refusals(engine, "val")) == 1
    frozen.advance(minutes=1)
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, [sid], actor="vic", role=actions.VIEWER)
    assert len(_refusals(engine, "vic")) == actions.REFUSED_AUDIT_LIMIT + 1
    assert sessions.touch(engine, sid)  # the session was never touched by any of it


def test_a_refused_logout_of_a_million_ids_writes_a_small_row(engine, frozen):
    ids = range(1, 1_100_001)
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, ids, actor="vic", role=actions.VIEWER)
    with engine.connect() as conn:
        (detail,) = conn.execute(
            sa.select(audit_t.c.detail).where(audit_t.c.action == "logout_refused")
        ).scalars()
    assert len(detail) < 2_000
    parsed = json.loads(detail)
    assert parsed["session_count"] == 1_100_000
    assert parsed["session_ids"] == list(range(1, actions.REFUSED_IDS_SHOWN + 1))
