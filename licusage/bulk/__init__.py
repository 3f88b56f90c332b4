"""A large, realistic store, generated vectorised with numpy and bulk-loaded (for benchmarks).

:func:`generate_large` is the entry point (``licusage demo --active --history``). It runs in
three stages, one module each:

* :mod:`.generate`: users, sessions and their licenses sampled as numpy arrays in the demo
  catalogue, with a large store's mix of pools and job roles (:data:`licusage.demo.LARGE_SEAT_SHARES`,
  :data:`licusage.demo.LARGE_JOB_ROLES`), and the seat rules enforced on the arrays
  (:func:`admit`: first come, first served admission to a concurrent pool, over the occupancy
  intervals that :func:`licusage.analytics.intervals.merge` makes of each user's sessions;
  refusals become ``pool_full`` denials);
* :mod:`.rows`: the result as the store's rows (sessions, holds, denials, named assignments,
  the idle policy's audit events), column by column;
* :mod:`.load`: the rows written in one transaction: on SQLite with ``executemany`` of tuples,
  on PostgreSQL with ``COPY``; the tables' secondary indexes are dropped before loading and
  rebuilt afterwards (safe: the store holds no sessions yet, and it all happens in the one
  transaction).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tqdm import tqdm  # the plain bar: shown only on a terminal (the CLI)

from .. import catalog, clock
from ..db import store_operation
from ..demo import DemoSummary, user_names
from ..models import sessions_t
from ..validation import check_whole
from .generate import (
    CONCURRENT_USER,
    DAY,
    HOUR,
    JOB_ROLES,
    MINUTE,
    NAMED_USER,
    OPEN,
    PRODUCTS,
    REASONS,
    SEAT_SHARES,
    US,
    admit,
    simulate,
)
from .load import CHUNK, load, refuse_sessions
from .rows import table_rows

__all__ = [
    "CHUNK",
    "CONCURRENT_USER",
    "DAY",
    "HOUR",
    "JOB_ROLES",
    "MINUTE",
    "NAMED_USER",
    "OPEN",
    "PRODUCTS",
    "REASONS",
    "SEAT_SHARES",
    "US",
    "admit",
    "generate_large",
]


@store_operation
def generate_large(
    engine: Engine,
    users: int = 20_000,
    active: int = 100_000,
    history: int = 2_000_000,
    days: int = 365,
    seed: int = 0,
    now: datetime | None = None,
    progress: bool = False,
) -> DemoSummary:
    """Fill a store without sessions with `active` open and `history` ended sessions of `users`
    users over `days` days up to `now`, in the demo catalogue, following the seat rules.

    Deterministic for the same arguments. Fewer sessions than asked are made only when the
    pools refuse too many logins (each refusal is a recorded denial). Raises
    :class:`~licusage.errors.InvalidInput` for bad counts or a store that holds sessions.
    """
    check_whole(users, "users", 1)
    check_whole(active, "active", 0)
    check_whole(history, "history", 0)
    check_whole(days, "days", 1)
    check_whole(seed, "seed", 0)
    when = clock.to_db(now or clock.now())
    assert when is not None
    now_us = int((when - datetime(1970, 1, 1)) // timedelta(microseconds=1))
    with engine.connect() as conn:
        refuse_sessions(
            conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one()
        )

    with tqdm(total=4, desc="generating", unit="step", disable=not progress, leave=False) as bar:
        plan, named, seats = simulate(users, active, history, days, seed, now_us)
        bar.update(3)
        for (product, license_type), count in seats.items():
            catalog.add_pool(engine, product, license_type, count)
        cat = catalog.read_catalog(engine)
        with engine.connect() as conn:
            first_id = (conn.execute(sa.select(sa.func.max(sessions_t.c.id))).scalar() or 0) + 1
        tables = table_rows(plan, user_names(users), named, cat, now_us, first_id)
        bar.update(1)

    total = sum(len(rows) for rows in tables)
    with tqdm(total=total, desc="writing", unit="row", disable=not progress, leave=False) as bar:
        load(engine, tables, bar.update)
    _assignments, sessions, holds, denials, _audit = tables
    return DemoSummary(
        users=users,
        sessions=len(sessions),
        active_sessions=sessions.column("ended_at").count(None),
        holds=len(holds),
        denials=len(denials),
        pools=len(seats),
        now=when,
    )
