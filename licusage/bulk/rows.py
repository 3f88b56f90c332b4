"""The generated plan as the store's rows: ids, names, timestamps, holds, denials, named
assignments and the idle policy's audit events, as column lists ready for :mod:`.load`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import catalog
from ..models import assignments_t, audit_t, denials_t, holds_t, sessions_t
from ..sessions import IDLE_TIMEOUT, POOL_FULL, user_key
from .generate import (
    CONCURRENT_USER,
    DAY,
    NAMED_USER,
    OPEN,
    PRODUCTS,
    REASONS,
    BoolArray,
    IntArray,
    Plan,
    host_names,
)
from .load import Rows


def _timestamps(values: IntArray) -> list[str]:
    """Microseconds as the store's naive-UTC text (SQLAlchemy's SQLite form, PostgreSQL input)."""
    if not len(values):
        return []
    text = np.datetime_as_string(values.astype("datetime64[us]"), unit="us")
    text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")  # "T" -> " ", in place
    return text.tolist()


def _pick(values: Sequence[Any], index: IntArray) -> list[Any]:
    """``values[i]`` for each i, sharing the objects (no new strings)."""
    return list(map(values.__getitem__, index.tolist()))


def table_rows(
    plan: Plan,
    names: Sequence[str],
    named: BoolArray,
    cat: catalog.Catalog,
    now_us: int,
    first_id: int,
) -> list[Rows]:
    """The rows of named assignments, sessions, holds, denials and the idle policy's audit
    events (in that order: the order they are loaded in), as column lists.

    `names` are the users' names, `named` who is on each Named User pool, `cat` the store's
    catalogue (the pools the seats were added to), `first_id` the first session id.
    """
    s = plan.sessions
    created = np.flatnonzero(plan.created)
    created = created[np.argsort(s.start[created], kind="stable")]  # ids follow login order
    ids = np.arange(first_id, first_id + len(created))
    keys = [user_key(n) for n in names]
    hosts = host_names(len(names))
    user = s.user[created]
    is_open = s.end[created] == OPEN
    started = _timestamps(s.start[created])
    ended: list[str | None] = [*_timestamps(np.where(is_open, now_us, s.end[created]))]
    reason = np.where(is_open, len(REASONS), s.reason[created])
    user_names_ = _pick(names, user)
    ended_by: list[str | None] = list(user_names_)
    for index in np.flatnonzero(is_open).tolist():
        ended[index] = None
        ended_by[index] = None
    for index in np.flatnonzero(reason == REASONS.index(IDLE_TIMEOUT)).tolist():
        ended_by[index] = "policy"
    sessions = Rows.of(
        sessions_t,
        id=ids.tolist(),
        user_name=user_names_,
        user_key=_pick(keys, user),
        host=_pick(hosts, s.host[created]),
        started_at=started,
        last_activity=_timestamps(s.last[created]),
        ended_at=ended,
        end_reason=_pick([*REASONS, None], reason),
        ended_by=ended_by,
    )

    hold_parts: list[tuple[IntArray, int, int, int]] = []
    denial_parts: list[tuple[IntArray, int, int, int]] = []
    for column, product in enumerate(PRODUCTS):
        granted = plan.granted[created, column]
        for kind, type_name in ((1, NAMED_USER), (2, CONCURRENT_USER)):
            pool = cat.pool(product, type_name)
            rows = np.flatnonzero(granted == kind)
            if len(rows):
                assert pool is not None
                hold_parts.append((rows, pool.product_id, pool.license_type_id, pool.id))
        pool = cat.pool(product, CONCURRENT_USER)
        refused = np.flatnonzero(plan.denied[:, column])
        if len(refused):
            assert pool is not None
            denial_parts.append((refused, pool.product_id, pool.license_type_id, pool.id))

    def spread(parts: list[tuple[IntArray, int, int, int]], field: int) -> IntArray:
        return np.repeat([p[field] for p in parts], [len(p[0]) for p in parts]).astype(np.int64)

    rows = np.concatenate([part[0] for part in hold_parts] or [np.zeros(0, np.int64)])
    # in session order: the primary key and the time indexes then grow at their end
    product_ids = spread(hold_parts, 1)
    in_order = np.lexsort((product_ids, rows))
    rows, product_ids = rows[in_order], product_ids[in_order]
    holds = Rows.of(
        holds_t,
        session_id=ids[rows].tolist(),
        product_id=product_ids.tolist(),
        license_type_id=spread(hold_parts, 2)[in_order].tolist(),
        pool_id=spread(hold_parts, 3)[in_order].tolist(),
        user_name=_pick(_pick(keys, user), rows),  # holds keep the identity
        granted_at=_pick(started, rows),
        released_at=_pick(ended, rows),
    )

    refused = np.concatenate([part[0] for part in denial_parts] or [np.zeros(0, np.int64)])
    by_time = np.argsort(s.start[refused], kind="stable")
    refused = refused[by_time]
    denials = Rows.of(
        denials_t,
        at=_timestamps(s.start[refused]),
        user_name=_pick(keys, s.user[refused]),
        host=_pick(hosts, s.host[refused]),
        product_id=spread(denial_parts, 1)[by_time].tolist(),
        license_type_id=spread(denial_parts, 2)[by_time].tolist(),
        pool_id=spread(denial_parts, 3)[by_time].tolist(),
        reason=[POOL_FULL] * len(refused),
    )

    assigned_at = _timestamps(np.array([now_us - 400 * DAY]))[0]
    pool_ids: list[int] = []
    members: list[str] = []
    for column, product in enumerate(PRODUCTS):
        pool = cat.pool(product, NAMED_USER)
        if pool is None:
            continue
        on_pool = sorted(_pick(keys, np.flatnonzero(named[:, column])))
        pool_ids += [pool.id] * len(on_pool)
        members += on_pool
    assignments = Rows.of(
        assignments_t,
        pool_id=pool_ids,
        user_name=members,
        assigned_at=[assigned_at] * len(members),
    )

    # every session the idle policy ended has its audit event, as reap_idle writes it
    idle = np.flatnonzero(reason == REASONS.index(IDLE_TIMEOUT))
    product_names = cat.product_names()
    type_names = cat.type_names()
    freed: dict[int, dict[str, str]] = {int(i): {} for i in idle.tolist()}
    for part_rows, product_id, type_id, _pool in hold_parts:
        for index in part_rows[np.isin(part_rows, idle)].tolist():
            freed[index][product_names[product_id]] = type_names[type_id]
    idle_list = idle.tolist()
    audit = Rows.of(
        audit_t,
        at=_pick(ended, idle),
        actor=["policy"] * len(idle_list),
        action=["end_session"] * len(idle_list),
        session_id=ids[idle].tolist(),
        user_name=_pick(user_names_, idle),
        reason=[IDLE_TIMEOUT] * len(idle_list),
        origin=[None] * len(idle_list),
        detail=[json.dumps({"licenses": freed[i]}, sort_keys=True) for i in idle_list],
    )
    return [assignments, sessions, holds, denials, audit]
