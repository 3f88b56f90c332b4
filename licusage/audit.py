"""The audit trail: every write an actor makes is one row of ``audit_events``.

Writes run inside the caller's transaction (:func:`record_audit` for one event,
:func:`record_session_ends` for the sessions one call of :func:`licusage.sessions.end_sessions`
ended); reads (:func:`audit_log`, :func:`audit_actors`) are queries like those of
:mod:`licusage.queries`, which re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import clock
from .db import store_operation
from .errors import InvalidInput
from .models import audit_t

END_SESSION = "end_session"


def record_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    detail: Mapping[str, object] | None = None,
    session_id: int | None = None,
    user_name: str | None = None,
    reason: str | None = None,
    origin: str | None = None,
    at: datetime | None = None,
) -> None:
    """Write one audit event inside the caller's transaction."""
    conn.execute(
        sa.insert(audit_t).values(
            at=clock.current_db_time(at),
            actor=actor,
            action=action,
            session_id=session_id,
            user_name=user_name,
            reason=reason,
            origin=origin,
            detail=None
            if detail is None
            else json.dumps(dict(detail), sort_keys=True, default=str),
        )
    )


def record_session_ends(
    conn: Connection,
    ended: Mapping[int, str],
    freed: Mapping[int, Mapping[str, str]],
    *,
    at: datetime,
    actor: str,
    reason: str,
    origin: str | None = None,
) -> None:
    """Write one ``end_session`` event per ended session (id -> user name), naming the
    licenses it freed (product -> license type), inside the caller's transaction."""
    conn.execute(
        sa.insert(audit_t),
        [
            {
                "at": at,
                "actor": actor,
                "action": END_SESSION,
                "session_id": session_id,
                "user_name": ended[session_id],
                "reason": reason,
                "origin": origin,
                "detail": json.dumps({"licenses": dict(freed[session_id])}, sort_keys=True),
            }
            for session_id in sorted(ended)
        ],
    )


@store_operation
def audit_log(
    engine: Engine,
    start: datetime | None = None,
    end: datetime | None = None,
    actor: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Audit events, newest first: ``at`` (UTC), ``actor``, ``action``, ``session_id``,
    ``user``, ``reason``, ``origin``, ``detail`` (JSON text). `start` inclusive, `end` exclusive;
    `actor` matches exactly."""
    a = audit_t
    query = sa.select(
        a.c.id,
        a.c.at,
        a.c.actor,
        a.c.action,
        a.c.session_id,
        a.c.user_name.label("user"),
        a.c.reason,
        a.c.origin,
        a.c.detail,
    ).order_by(a.c.at.desc(), a.c.id.desc())
    for name, value in (("start", start), ("end", end)):
        if value is not None and not isinstance(value, datetime):
            raise InvalidInput(f"{name} must be a datetime, not {value!r}")
    if actor is not None and not isinstance(actor, str):
        raise InvalidInput(f"actor must be text, not {actor!r}")
    if start is not None:
        query = query.where(a.c.at >= clock.to_db(start))
    if end is not None:
        query = query.where(a.c.at < clock.to_db(end))
    if actor:
        # no stored actor contains NUL (and PostgreSQL refuses it as a parameter)
        query = query.where(a.c.actor == actor if "\x00" not in actor else sa.false())
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(
        rows,
        columns=["id", "at", "actor", "action", "session_id", "user", "reason", "origin", "detail"],
    )
    frame["at"] = pd.to_datetime(frame["at"]).dt.tz_localize("UTC")
    frame["session_id"] = frame["session_id"].astype("Int64")
    return frame


@store_operation
def audit_actors(engine: Engine) -> list[str]:
    """Everyone named as the actor of an audit event, sorted (the audit view's actor choices)."""
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(audit_t.c.actor).distinct().order_by(audit_t.c.actor)).scalars()
        )
