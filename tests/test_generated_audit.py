"""Demo and bulk stores tell the same story as a live one (issue 15, finding 7): every session
the idle policy ended has exactly one audit event naming the licenses it freed. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter

import sqlalchemy as sa

from licusage import bulk, demo
from licusage.models import audit_t, holds_t, sessions_t


def _check_every_policy_end_is_audited(engine) -> int:
    with engine.connect() as conn:
        reaped = dict(
            conn.execute(
                sa.select(sessions_t.c.id, sessions_t.c.ended_at).where(
                    sessions_t.c.end_reason == "idle_timeout"
                )
            ).all()
        )
        events = conn.execute(
            sa.select(audit_t.c.session_id, audit_t.c.at, audit_t.c.actor, audit_t.c.detail).where(
                audit_t.c.action == "end_session"
            )
        ).all()
        held = Counter(
            conn.execute(
                sa.select(holds_t.c.session_id).where(holds_t.c.session_id.in_(list(reaped)[:500]))
            ).scalars()
        )
    per_session = Counter(e.session_id for e in events)
    assert reaped, "the generator made no idle-timeout sessions"
    assert set(per_session) == set(reaped)
    assert set(per_session.values()) == {1}
    for event in events:
        assert event.at == reaped[event.session_id]
        assert event.actor == "policy"
        if event.session_id in held:
            assert len(json.loads(event.detail)["licenses"]) == held[event.session_id]
    return len(reaped)


def test_demo_audits_every_idle_timeout(engine):
    demo.generate(engine, users=40, days=5)
    assert _check_every_policy_end_is_audited(engine) > 0


def test_bulk_audits_every_idle_timeout(engine):
    bulk.generate_large(engine, users=60, active=100, history=3_000, days=10)
    assert _check_every_policy_end_is_audited(engine) > 0
