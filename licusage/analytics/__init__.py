"""Usage analytics over the session history: an Engine and a time window in, pandas out.

Definitions shared by every function here (see ``docs/analytics.md`` for the long form):

* **Window**: ``start`` (inclusive) to ``end`` (exclusive). Naive datetimes are taken as UTC;
  results carry tz-aware UTC timestamps. The window is cut at :func:`licusage.clock.now`
  wherever "how long" matters: a license still held (``released_at`` NULL) counts as held until
  ``min(end, now)``.
* **In use** of a pool at instant ``t``: the number of *distinct users* holding a license of the
  pool with ``granted_at <= t < released_at``. A user with two sessions on the pool takes one seat.
  For a pool counted **per checkout** (a license server's floating feature) it is the sum of the
  licenses held then (a checkout of 8 licenses counts 8); the replay and right-sizing then see
  each license as a request of its own.
* **Buckets** are half-open, ``[bucket_start, bucket_start + freq)``, anchored at ``start``; the
  last bucket stops at ``end``. ``freq`` is a fixed duration (``"15min"``, ``"1h"``, ``"1D"``,
  ``"7D"`` or a ``timedelta``); calendar frequencies such as months are refused.
* **Observed period** of a pool (for time-weighted figures): the window, starting no earlier than
  the pool's creation (or its first recorded hold or denial, if older: imported history) and
  ending no later than now.
* **Seats** are those in force at each moment (the seat history, ``pool_seats``): ``peaks``'
  time near full compares in-use with the seats of that moment; ``seats`` columns give the
  current seats. Seats that are not known (a FlexLM debug log says nothing about them) are
  missing (``<NA>``), never 0, and what depends on them is NaN.

The heavy lifting is vectorised numpy/pandas over one query per table (never a Python loop per
session): intervals are merged per user by sort + running maximum, turned into +1/-1 events,
summed cumulatively into a step function of in-use per pool, and reduced per bucket. The
what-if replay, being first come first served, is one tight loop over the requests of a pool
with an integer heap of seat releases.
"""

from __future__ import annotations

from .intervals import HOUR_NS, SECOND_NS
from .loading import NAT, NULL_TEXT, POOL_COLUMNS, UNIT_SEPARATOR, pool_label
from .sizing import FALLBACK_REQUEST_NS, replay, right_size
from .usage import (
    BUSY,
    DEFAULT_IDLE_OVER,
    NEAR_FULL,
    WEEKDAYS,
    concurrency,
    denials,
    hour_of_week,
    idle_time,
    peaks,
    top_users,
    unused_named_seats,
)

__all__ = [
    "BUSY",
    "DEFAULT_IDLE_OVER",
    "FALLBACK_REQUEST_NS",
    "HOUR_NS",
    "NAT",
    "NEAR_FULL",
    "NULL_TEXT",
    "POOL_COLUMNS",
    "SECOND_NS",
    "UNIT_SEPARATOR",
    "WEEKDAYS",
    "concurrency",
    "denials",
    "hour_of_week",
    "idle_time",
    "peaks",
    "pool_label",
    "replay",
    "right_size",
    "top_users",
    "unused_named_seats",
]
