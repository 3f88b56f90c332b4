"""What an admin (or a policy) does to sessions: log them out, reap idle ones.

Every action ends sessions through :func:`licusage.sessions.end_sessions` in one transaction,
never deletes, and writes one audit event per session ended, naming the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .audit import record_audit
from .db import store_operation, write
from .errors import InvalidInput, PermissionDenied
from .models import audit_t, holds_t, pools_t, sessions_t
from .sessions import (
    ADMIN_LOGOUT,
    IDLE_TIMEOUT,
    check_reason,
    check_session_id,
    end_sessions,
    id_conditions,
    lock_all_pools,
    write_time,
)
from .sources.remove import remove_on_servers
from .validation import check_actor, check_time, identity_of

log = logging.getLogger(__name__)

ADMIN = "admin"
VIEWER = "viewer"
ROLES = (ADMIN, VIEWER)


@dataclass(frozen=True)
class LogoutResult:
    """Which of the requested ids this call ended, which had ended before, which do not exist,
    which were spared (the actor's own sessions, when asked to spare them), and which license
    server sessions stay because their server's removal failed (id -> why)."""

    logged_out: tuple[int, ...] = ()
    already_ended: tuple[int, ...] = ()
    unknown: tuple[int, ...] = ()
    spared: tuple[int, ...] = ()
    not_removed: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReapResult:
    """Sessions a reap ended (or, in a dry run, would end), with how long each had been idle."""

    logged_out: tuple[int, ...] = ()
    idle: dict[int, timedelta] = field(default_factory=dict)
    dry_run: bool = False


def _check_ids(session_ids: Iterable[int]) -> list[int]:
    if isinstance(session_ids, (str, bytes)) or not isinstance(session_ids, Iterable):
        raise InvalidInput("session_ids must be a collection of integer session ids")
    return sorted({check_session_id(value) for value in session_ids})


@store_operation
def logout_sessions(
    engine: Engine,
    session_ids: Iterable[int],
    actor: str,
    reason: str = ADMIN_LOGOUT,
    *,
    spare_own: bool = False,
    origin: str | None = None,
    at: datetime | None = None,
) -> LogoutResult:
    """End the given sessions in one transaction, as `actor`.

    Idempotent: ids already ended are reported in ``already_ended``, ids not in the store in
    ``unknown``. With `spare_own`, sessions of the user named `actor` are left running and
    reported in ``spared`` (compared by identity: ``Alice`` spares ``alice``'s). Malformed input raises :class:`~licusage.errors.InvalidInput` and
    changes nothing.

    A session read from a license server is first removed on the server by its removal command
    (:mod:`licusage.sources.remove`, before the transaction: a server is not kept waiting inside
    it); when that fails it stays active, is reported in ``not_removed`` with the reason, and
    the failure is audited (action ``logout_failed``).
    """
    ids = _check_ids(session_ids)
    actor = check_actor(actor)
    reason = check_reason(reason)
    at = check_time(at)
    if not ids:
        return LogoutResult()
    me = identity_of(actor)
    with engine.connect() as conn:
        mine = set()
        if spare_own:
            for id_in in id_conditions(conn, sessions_t.c.id, ids):
                mine.update(
                    conn.execute(
                        sa.select(sessions_t.c.id).where(id_in, sessions_t.c.user_key == me)
                    ).scalars()
                )
    not_removed = remove_on_servers(engine, [i for i in ids if i not in mine])
    with write(engine) as conn:
        known: dict[int, str] = {}  # id -> the user's identity
        for id_in in id_conditions(conn, sessions_t.c.id, ids):
            known.update(
                conn.execute(sa.select(sessions_t.c.id, sessions_t.c.user_key).where(id_in)).all()
            )
        spared = [i for i in ids if spare_own and known.get(i) == me]
        targets = [i for i in ids if i in known and i not in set(spared) and i not in not_removed]
        ended = end_sessions(conn, targets, actor=actor, reason=reason, at=at, origin=origin)
        for session_id, why in not_removed.items():
            record_audit(
                conn,
                actor=actor,
                action="logout_failed",
                origin=origin,
                session_id=session_id,
                detail={"reason": why},
            )
    ended_set = set(ended)
    result = LogoutResult(
        logged_out=tuple(ended),
        already_ended=tuple(i for i in targets if i not in ended_set),
        unknown=tuple(i for i in ids if i not in known),
        spared=tuple(spared),
        not_removed=dict(not_removed),
    )
    log.info(
        "logout by %s (%s): %d sessions ended, %d already ended, %d unknown, %d spared",
        actor,
        reason,
        len(result.logged_out),
        len(result.already_ended),
        len(result.unknown),
        len(result.spared),
    )
    return result


def authorized_logout(
    engine: Engine,
    session_ids: Iterable[int],
    actor: str,
    role: str,
    *,
    origin: str | None = None,
) -> LogoutResult:
    """Log sessions out on behalf of a signed-in user with `role`, sparing the actor's own.

    A non-admin is refused with :class:`~licusage.errors.PermissionDenied`, and the attempt is
    audited (action ``logout_refused``): at most :data:`REFUSED_AUDIT_LIMIT` rows per actor a
    minute (further attempts are refused all the same and logged, not audited), each naming at
    most :data:`REFUSED_IDS_SHOWN` of the ids (and ``session_count`` when there were more).
    """
    actor = check_actor(actor)
    if role != ADMIN:
        ids = _check_ids(session_ids)
        _audit_refusal(engine, actor, role, ids, origin)
        raise PermissionDenied(f"{actor} ({role}) may not log sessions out")
    return logout_sessions(engine, session_ids, actor, spare_own=True, origin=origin)


# a viewer's refused logouts: audited at most this many per actor and window (more attempts
# are refused all the same, unaudited), each row naming at most REFUSED_IDS_SHOWN ids
REFUSED_AUDIT_LIMIT = 10
REFUSED_AUDIT_WINDOW = timedelta(minutes=1)
REFUSED_IDS_SHOWN = 100


@store_operation
def _audit_refusal(
    engine: Engine, actor: str, role: str, ids: list[int], origin: str | None
) -> bool:
    """Audit a refused logout, bounded in rate and size; False when the rate limit left it out."""
    with write(engine) as conn:
        now = write_time(conn)
        recent = conn.execute(
            sa.select(sa.func.count())
            .select_from(audit_t)
            .where(
                audit_t.c.actor == actor,
                audit_t.c.action == "logout_refused",
                audit_t.c.at > now - REFUSED_AUDIT_WINDOW,
            )
        ).scalar_one()
        if recent >= REFUSED_AUDIT_LIMIT:
            log.warning("refused logout by %s (%s) not audited: rate limit reached", actor, role)
            return False
        detail: dict[str, object] = {"role": role, "session_ids": ids[:REFUSED_IDS_SHOWN]}
        if len(ids) > REFUSED_IDS_SHOWN:
            detail["session_count"] = len(ids)
        record_audit(
            conn, actor=actor, action="logout_refused", origin=origin, detail=detail, at=now
        )
    return True


def is_idle(last_activity: datetime, now: datetime, limit: timedelta | None) -> bool:
    """The reaping decision: has a session been idle for longer than `limit`?"""
    return limit is not None and now - last_activity > limit


def effective_limit(
    default: timedelta | None, pool_limits: Iterable[timedelta | None]
) -> timedelta | None:
    """A session's idle limit: the strictest of the default and its pools' own limits."""
    limits = [limit for limit in (default, *pool_limits) if limit is not None]
    return min(limits) if limits else None


@store_operation
def reap_idle(
    engine: Engine,
    idle_over: timedelta | None,
    actor: str = "policy",
    dry_run: bool = False,
) -> ReapResult:
    """End active sessions idle longer than their limit, with reason ``idle_timeout``.

    A session's limit is `idle_over`, or a shorter idle limit of a pool it holds a license of
    (see ``add_pool(idle_limit=...)``); `idle_over=None` applies only the pools' limits. With
    `dry_run`, nothing changes and the result lists what would be ended.
    """
    if idle_over is not None:
        if isinstance(idle_over, pd.Timedelta):
            idle_over = idle_over.to_pytimedelta()
        if not isinstance(idle_over, timedelta) or idle_over < timedelta(0):
            raise InvalidInput(f"idle_over must be a non-negative timedelta, not {idle_over!r}")
    actor = check_actor(actor)
    # a dry run only reads: it need not take SQLite's write lock
    with engine.connect() if dry_run else write(engine) as conn:
        if not dry_run:  # the pools first, then the time (see sessions.write_time)
            lock_all_pools(conn)
        now = write_time(conn)
        limits = _candidate_limits(conn, idle_over, now)
        by_limit: dict[timedelta, list[int]] = {}
        idle: dict[int, timedelta] = {}
        for session_id, last_activity, limit in limits:
            if limit is not None and is_idle(last_activity, now, limit):
                by_limit.setdefault(limit, []).append(session_id)
                idle[session_id] = now - last_activity
        if dry_run:
            return ReapResult(tuple(sorted(idle)), idle, dry_run=True)
        ended: list[int] = []
        for limit, ids in by_limit.items():
            ended += end_sessions(
                conn,
                ids,
                actor=actor,
                reason=IDLE_TIMEOUT,
                at=now,
                condition=sessions_t.c.last_activity < now - limit,
            )
    return ReapResult(tuple(sorted(ended)), {i: idle[i] for i in ended})


def _candidate_limits(
    conn: sa.Connection, default: timedelta | None, now: datetime
) -> list[tuple[int, datetime, timedelta | None]]:
    """(session id, last activity, effective limit) of active sessions that might be idle."""
    pool_limits = [
        timedelta(seconds=s)
        for s in conn.execute(
            sa.select(pools_t.c.idle_limit_seconds).where(pools_t.c.idle_limit_seconds.is_not(None))
        ).scalars()
    ]
    shortest = effective_limit(default, pool_limits)
    if shortest is None:
        return []
    try:
        cutoff = now - shortest
    except OverflowError:  # a limit longer than the calendar: nothing is idle that long
        return []
    query = (
        sa.select(sessions_t.c.id, sessions_t.c.last_activity, pools_t.c.idle_limit_seconds)
        .select_from(
            sessions_t.outerjoin(
                holds_t,
                sa.and_(holds_t.c.session_id == sessions_t.c.id, holds_t.c.released_at.is_(None)),
            ).outerjoin(pools_t, pools_t.c.id == holds_t.c.pool_id)
        )
        .where(sessions_t.c.ended_at.is_(None), sessions_t.c.last_activity < cutoff)
    )
    per_session: dict[int, tuple[datetime, list[timedelta | None]]] = {}
    for session_id, last_activity, seconds in conn.execute(query):
        entry = per_session.setdefault(session_id, (last_activity, []))
        entry[1].append(None if seconds is None else timedelta(seconds=seconds))
    return [
        (session_id, last_activity, effective_limit(default, pool_limits))
        for session_id, (last_activity, pool_limits) in per_session.items()
    ]
