"""The hourly roll-up's write side: marking the hours a write changed.

The roll-up (tables ``rollup_hours``, ``rollup_levels``, ``rollup_pools``, ``rollup_dirty``;
computed and read by :mod:`licusage.analytics.rollup`) keeps, per pool and complete UTC hour,
the exact peak (and lowest) in use, the seat-seconds used, how long each in-use count lasted and
the denials. Every write that grants or releases a hold or records a
denial calls :func:`mark` in its own transaction, naming the pool and the earliest time it
changed; readers recompute the pool from that hour on before they read. A hold and its mark
commit together or not at all, so no crash or concurrent writer can leave the roll-up stale.

Why "from that hour on" and not just that hour: an open hold counts until it is released, so
granting or releasing one changes every later hour too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import rollup_dirty_t, rollup_hours_t, rollup_levels_t, rollup_pools_t

# the statements of :func:`invalidate` for every pool, for a raw DB-API cursor (bulk loading)
INVALIDATE_SQL = tuple(
    f"DELETE FROM {table.name}"
    for table in (rollup_dirty_t, rollup_levels_t, rollup_hours_t, rollup_pools_t)
)


def hour_of(at: datetime) -> datetime:
    """The UTC hour `at` (naive UTC) falls in."""
    return at.replace(minute=0, second=0, microsecond=0)


def mark(conn: Connection, changes: Iterable[tuple[int | None, datetime]]) -> None:
    """Record, inside the caller's transaction, that each ``(pool id, time)`` changed its pool
    from that time on (a hold granted or released, a denial recorded). Pool None is ignored
    (a denial of a request no pool serves); one entry per pool, at its earliest time."""
    earliest: dict[int, datetime] = {}
    for pool_id, at in changes:
        if pool_id is not None and (pool_id not in earliest or at < earliest[pool_id]):
            earliest[pool_id] = at
    if earliest:
        conn.execute(
            sa.insert(rollup_dirty_t),
            [{"pool_id": p, "hour": hour_of(at)} for p, at in sorted(earliest.items())],
        )


def invalidate(conn: Connection, pool_ids: Iterable[int] | None = None) -> None:
    """Forget the roll-up of `pool_ids` (default: every pool), inside the caller's transaction:
    the next read recomputes it from the pool's first hold or denial (a pool's counting rule
    changed, history was loaded in bulk)."""
    if pool_ids is None:
        for statement in INVALIDATE_SQL:
            conn.exec_driver_sql(statement)
        return
    ids = sorted(set(pool_ids))
    if ids:
        for table in (rollup_dirty_t, rollup_levels_t, rollup_hours_t, rollup_pools_t):
            conn.execute(sa.delete(table).where(table.c.pool_id.in_(ids)))
