"""What an admin (or a policy) does to sessions: log them out, reap idle ones.

Every action ends sessions through :func:`licusage.sessions.end_sessions` in one transaction,
never deletes, and writes one audit event per session ended, naming the actor.
:func:`preview_logout` says what a logout would do, by the same rules, changing nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .audit import record_audit
from .catalog import read_catalog
from .db import store_operation, write
from .display import plural
from .errors import InvalidInput, PermissionDenied
from .models import APP_SOURCE, audit_t, holds_t, pools_t, servers_t, sessions_t
from .queries import held_licenses
from .sessions import (
    ADMIN_LOGOUT,
    IDLE_TIMEOUT,
    check_reason,
    check_session_id,
    end_sessions,
    lock_all_pools,
    rows_for_ids,
    write_time,
)
from .sources.remove import remove_on_servers
from .validation import check_actor, check_time, describe, identity_of

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

    def summary(
        self, style: Literal["sentence", "lines"] = "sentence", *, previewed: bool = False
    ) -> str:
        """What the logout did, for people.

        ``sentence`` (the dashboard's notification): ``Logged out 2 sessions. 1 had already
        ended (12). Your own 1 session was left running.``. ``lines`` (the CLI): one line per
        kind, ``Logged out: 12, 15``, ``Already ended: ...``, ``Unknown: ...`` (left out when
        `previewed`: the confirmation said them), then a line starting with
        :data:`NOT_LOGGED_OUT` per session whose server removal failed (reasons escaped).
        """
        if style == "sentence":
            return self._sentence()
        if style != "lines":
            raise InvalidInput(f"summary style must be 'sentence' or 'lines', not {style!r}")

        def listed(ids: Iterable[int]) -> str:
            return ", ".join(map(str, ids)) or "none"

        lines = [f"Logged out: {listed(self.logged_out)}"]
        if self.already_ended and not previewed:
            lines.append(f"Already ended: {listed(self.already_ended)}")
        if self.unknown and not previewed:
            lines.append(f"Unknown: {listed(self.unknown)}")
        lines += [f"{NOT_LOGGED_OUT}: {i}: {describe(why)}" for i, why in self.not_removed.items()]
        return "\n".join(lines)

    def _sentence(self) -> str:
        parts = [f"Logged out {plural(len(self.logged_out), 'session')}."]
        if self.already_ended:
            ids = ", ".join(str(i) for i in self.already_ended[:10])
            parts.append(f"{len(self.already_ended):,} had already ended ({ids}).")
        if self.spared:
            own = len(self.spared)
            parts.append(
                f"Your own {plural(own, 'session')} {'was' if own == 1 else 'were'} left running."
            )
        if self.unknown:
            parts.append(f"{len(self.unknown):,} no longer exist.")
        for session_id, why in list(self.not_removed.items())[:3]:
            parts.append(f"Session {session_id} is still logged in: {why}.")
        return " ".join(parts)


NOT_LOGGED_OUT = "Not logged out"  # how a line of LogoutResult.summary("lines") names a failure


@dataclass(frozen=True, eq=False)
class LogoutPreview:
    """What logging the requested ids out as an actor would do, read from the store.

    ``session_ids``: every requested id except the spared ones (what to pass to the logout);
    of those, ``active`` would end, ``already_ended`` and ``unknown`` are reported as such.
    ``spared``: the actor's own sessions, left running. ``users``: the distinct user names of
    ``active``, sorted. ``sessions``: ``session_id``, ``user``, ``host``, ``source`` of
    ``active`` by id; ``held``: their licenses (``session_id``, ``user``, ``product``,
    ``license_type``, ``licenses``); ``licenses``: ``product``, ``license_type``, ``count``,
    what the logout gives back. ``without_removal``: the license servers of ``active`` that have
    no removal command, whose sessions the logout cannot end (sorted).
    """

    session_ids: tuple[int, ...]
    active: tuple[int, ...]
    already_ended: tuple[int, ...]
    unknown: tuple[int, ...]
    spared: tuple[int, ...]
    users: tuple[str, ...]
    sessions: pd.DataFrame
    held: pd.DataFrame
    licenses: pd.DataFrame
    without_removal: tuple[str, ...] = ()

    def text(self, max_users: int = 8) -> str:
        """The question, e.g. "Log out 2 sessions of 2 users (alice, bob)?"."""
        count, users = len(self.active), list(self.users)
        shown = ", ".join(users[:max_users])
        if len(users) > max_users:
            shown += f" and {len(users) - max_users:,} more"
        return f"Log out {plural(count, 'session')} of {plural(len(users), 'user')} ({shown})?"

    @property
    def on_servers(self) -> dict[int, str]:
        """Session id -> license server, for the active sessions a license server holds (the
        logout runs the server's removal command for them first)."""
        rows = self.sessions[self.sessions["source"] != APP_SOURCE]
        return dict(zip(rows["session_id"].astype(int), rows["source"].astype(str), strict=True))


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


def own_sessions(user_keys: Mapping[int, str], actor: str) -> list[int]:
    """The ids among `user_keys` (session id -> the user's identity, ``sessions.user_key``)
    that are `actor`'s own: the same identity (``Alice`` owns ``alice``'s). What a logout
    with ``spare_own`` leaves running, and what :func:`preview_logout` says it spares."""
    me = identity_of(actor)
    return sorted(i for i, key in user_keys.items() if key == me)


def _user_keys(conn: sa.Connection, ids: list[int]) -> dict[int, str]:
    """Session id -> the user's identity, for the stored sessions among `ids`."""
    query = sa.select(sessions_t.c.id, sessions_t.c.user_key)
    return {int(i): key for i, key in rows_for_ids(conn, query, sessions_t.c.id, ids)}


@store_operation
def preview_logout(
    engine: Engine, session_ids: Iterable[int], actor: str, *, spare_own: bool = True
) -> LogoutPreview:
    """What :func:`logout_sessions` of `session_ids` as `actor` would do, changing nothing.

    The users, hosts and licenses are read from the store. With `spare_own` (the default, as
    :func:`authorized_logout` does) the actor's own sessions are spared, by the rule of
    :func:`own_sessions`; the CLI, which logs out whatever it is given, passes False.
    Malformed ids or actor raise :class:`~licusage.errors.InvalidInput`.
    """
    ids = _check_ids(session_ids)
    actor = check_actor(actor)
    s = sessions_t
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        query = sa.select(s.c.id, s.c.user_name, s.c.user_key, s.c.host, s.c.source, s.c.ended_at)
        stored = rows_for_ids(conn, query, s.c.id, ids)
        spared = own_sessions({r.id: r.user_key for r in stored}, actor) if spare_own else []
        mine = set(spared)
        active_rows = sorted(
            (r for r in stored if r.ended_at is None and r.id not in mine), key=lambda r: r.id
        )
        active = [int(r.id) for r in active_rows]
        held = held_licenses(conn, catalog, active)
        on_servers = sorted({r.source for r in active_rows if r.source != APP_SOURCE})
        unremovable = conn.execute(
            sa.select(servers_t.c.name)
            .where(
                servers_t.c.name.in_(on_servers),
                sa.func.coalesce(sa.func.trim(servers_t.c.remove_command), "") == "",
            )
            .order_by(servers_t.c.name)
        ).scalars()
        without_removal = tuple(str(name) for name in unremovable)
    known, ending = {int(r.id) for r in stored}, set(active)
    sessions = pd.DataFrame(
        [(int(r.id), r.user_name, r.host, r.source) for r in active_rows],
        columns=["session_id", "user", "host", "source"],
    ).astype({"session_id": "int64", "user": "string", "host": "string", "source": "string"})
    licenses = (
        held.groupby(["product", "license_type"], sort=True)["licenses"]
        .sum()
        .rename("count")
        .reset_index()
    )
    return LogoutPreview(
        session_ids=tuple(i for i in ids if i not in mine),
        active=tuple(active),
        already_ended=tuple(i for i in ids if i in known and i not in ending and i not in mine),
        unknown=tuple(i for i in ids if i not in known),
        spared=tuple(spared),
        users=tuple(sorted({str(u) for u in sessions["user"]})),
        sessions=sessions,
        held=held,
        licenses=licenses,
        without_removal=without_removal,
    )


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
    reported in ``spared`` (by :func:`own_sessions`: ``Alice`` spares ``alice``'s). Malformed
    input raises :class:`~licusage.errors.InvalidInput` and changes nothing.
    :func:`preview_logout` says beforehand what this would do.

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
    with engine.connect() as conn:
        mine = set(own_sessions(_user_keys(conn, ids), actor)) if spare_own else set()
    not_removed = remove_on_servers(engine, [i for i in ids if i not in mine])
    with write(engine) as conn:
        known = _user_keys(conn, ids)  # read again inside the transaction
        spared = own_sessions(known, actor) if spare_own else []
        left = set(spared)
        targets = [i for i in ids if i in known and i not in left and i not in not_removed]
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


def may_logout(role: str) -> bool:
    """Whether `role` may log sessions out: the one home of that rule (admins may). The
    dashboard asks it to enable Logout; :func:`authorized_logout` enforces it."""
    return role == ADMIN


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
    if not may_logout(role):
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
