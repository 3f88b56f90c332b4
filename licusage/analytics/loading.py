"""Loading the history for the analytics: the window, argument checks, and one query per
table fetched as numpy arrays (packed into one row on SQLite, parsed in C)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from .. import clock
from ..catalog import Catalog
from ..db import is_sqlite
from ..errors import InvalidInput
from ..models import denials_t, holds_t, pool_seats_t, pools_t, reservations_t, sessions_t
from ..validation import check_whole
from .intervals import Array

log = logging.getLogger(__name__)

POOL_COLUMNS = ["product", "license_type"]


@dataclass(frozen=True)
class Window:
    """A window in integer nanoseconds since the epoch (UTC)."""

    start: int
    end: int
    now: int

    @property
    def until(self) -> int:
        """Where held time stops counting: ``min(end, now)``, never before ``start``."""
        return max(self.start, min(self.end, self.now))

    def db(self, ns: int) -> datetime:
        """`ns` as the store's naive UTC, floored to the microsecond."""
        return pd.Timestamp(ns - ns % 1000, unit="ns").to_pydatetime()


def instant(value: object, name: str) -> int:
    if not isinstance(value, datetime) or pd.isna(value):
        raise InvalidInput(f"{name} must be a datetime, not {value!r}")
    return int(pd.Timestamp(clock.to_utc(value)).value)


def window_of(start: object, end: object) -> Window:
    lo, hi = instant(start, "start"), instant(end, "end")
    if hi < lo:
        raise InvalidInput(f"end ({end}) is before start ({start})")
    return Window(lo, hi, instant(clock.now(), "now"))


def duration_ns(value: object, name: str) -> int:
    """A positive fixed duration (timedelta, pandas Timedelta or a string like "15min")."""
    if isinstance(value, bool) or not isinstance(value, str | timedelta):
        raise InvalidInput(f"{name} must be a duration such as '1h' or a timedelta, not {value!r}")
    try:
        ns = pd.Timedelta(value).value
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"{name} must be a fixed duration, not {value!r}: {error}") from None
    if pd.isna(ns) or ns <= 0:
        raise InvalidInput(f"{name} must be a positive duration, not {value!r}")
    return int(ns)


def whole_number(value: object, name: str, low: int) -> int:
    """:func:`licusage.validation.check_whole`, numpy integers included."""
    if isinstance(value, np.integer) and value >= low:
        return int(value)
    return check_whole(value, name, low)


def pool_label(product: str, license_type: str) -> str:
    """How plots and tables name a pool: ``"Case Management / Concurrent User"``."""
    return f"{product} / {license_type}"


NAT = np.iinfo(np.int64).min
UNIT_SEPARATOR = "\x1f"
NULL_TEXT = "\x00"  # no stored name may contain NUL


def _times_ns(values: list | np.ndarray) -> Array:
    """Naive-UTC datetimes (or ISO text) as int64 nanoseconds; None/NaT become :data:`NAT`."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    if isinstance(values[0], str):
        parsed = np.array(values, dtype="datetime64[us]")  # ISO text, parsed in C
    else:
        parsed = pd.to_datetime(pd.Series(values, dtype=object)).to_numpy(dtype="datetime64[us]")
    return parsed.astype("datetime64[ns]").view(np.int64)


def _parse_packed(text: str | None, kind: str, count: int) -> Array | None:
    """A packed integer column (values joined by :data:`UNIT_SEPARATOR`) parsed by
    :func:`numpy.fromstring`, without splitting it into Python strings. None for other kinds
    or when the text has another shape (the caller splits it then)."""
    if text is None or count == 0 or kind != "int":
        return None  # datetimes: splitting and parsing in C is faster than digit arithmetic
    # numpy only warns of a value it cannot read (and stops there): anything but digits, signs
    # and separators (a decimal, a text) is split instead. Not by turning its warning into an
    # error: the warning filters are the process's, shared by the served app's threads.
    if not text.isascii() or text.encode("ascii").translate(None, _INTEGER_TEXT):
        return None
    try:
        values = np.fromstring(text, dtype=np.int64, sep=UNIT_SEPARATOR)
    except (ValueError, DeprecationWarning):  # a warning turned into an error by its caller
        return None
    return values if len(values) == count else None


_INTEGER_TEXT = b"0123456789-" + UNIT_SEPARATOR.encode("ascii")


def fetch(
    conn: Connection, query: sa.Select | sa.CompoundSelect, kinds: Mapping[str, str]
) -> dict[str, Array]:
    """Run `query`; return its columns as numpy arrays by kind: ``"int"`` (int64, no NULLs),
    ``"float"`` (float64, no NULLs), ``"time"`` (int64 ns, NULL as :data:`NAT`) or ``"text"``
    (object).

    Fetching a million rows one Python tuple at a time dominates the analytics on SQLite, so
    there the rows come back as one row of ``group_concat`` strings, split and parsed in C; a
    value containing the separator falls back to the row-wise fetch.
    """
    columns: list[list | Array] | None = None
    if is_sqlite(conn):
        sub = query.subquery()
        packed_query = sa.select(
            sa.func.count(),
            *[
                sa.func.group_concat(
                    sa.func.coalesce(
                        sa.cast(column, sa.Text), "NaT" if kind == "time" else NULL_TEXT
                    ),
                    UNIT_SEPARATOR,
                )
                for column, kind in zip(sub.c, kinds.values(), strict=True)
            ],
        )
        try:
            with conn.begin_nested():  # a savepoint: the caller's transaction (snapshot) stays
                packed = conn.execute(packed_query).one()
        except (exc.DataError, exc.OperationalError) as error:  # e.g. over the string limit
            log.info("fetching row by row: %s", error)
        else:
            count, texts = packed[0], packed[1:]
            split: list[list | Array] = []
            for text, kind in zip(texts, kinds.values(), strict=True):
                parsed = _parse_packed(text, kind, count)
                if parsed is not None:
                    split.append(parsed)
                else:
                    split.append([] if text is None else text.split(UNIT_SEPARATOR))
            if all(len(values) == count for values in split):
                columns = split
    if columns is None:
        rows = conn.execute(query).all()
        columns = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in kinds]
    out = {}
    for (name, kind), values in zip(kinds.items(), columns, strict=True):
        if isinstance(values, np.ndarray) and kind != "text":
            out[name] = values  # parsed from the packed text already
        elif kind == "int":
            out[name] = np.array(values, dtype=np.int64)
        elif kind == "float":
            out[name] = np.array(values, dtype=np.float64)
        elif kind == "time":
            out[name] = _times_ns(values)
        else:
            array = np.array(values, dtype=object)
            array[array == NULL_TEXT] = None
            out[name] = array
    return out


# a window at most this long is "recent": its holds are read as two index ranges (released
# inside it, still open) instead of one scan of every hold granted before its end
RECENT_NS = 7 * 24 * 3_600_000_000_000


def load_holds(
    conn: Connection,
    window: Window,
    *,
    with_sessions: bool = False,
    products: bool = True,
    pool_ids: Sequence[int] | None = None,
    granted_from: int | None = None,
    reservations: bool = True,
) -> pd.DataFrame:
    """Holds that overlap the window (of `pool_ids` only, if given; granted at or after
    `granted_from` only, if given: an index range when nothing older can matter): ``pool_id``,
    ``product_id`` (unless not `products`), ``user``, ``s``, ``e`` (ns), ``licenses`` and
    ``reserved``; with `with_sessions` also ``session_id`` and the session's ``last_activity``.

    With `reservations` (not with `with_sessions`) the licenses a license server kept reserved
    (``lmstat`` RESERVATIONs) are holds too, while they were seen: ``reserved`` True, ``user``
    their holder (``GROUP cfd``), all their licenses in use whatever the pool's counting rule.
    Open holds end at ``window.until``; holds are not clipped to the window otherwise.
    """
    h = holds_t
    kinds = {
        "pool_id": "int",
        "product_id": "int",
        "user": "text",
        "s": "time",
        "e": "time",
        "licenses": "int",
    }
    if not products:
        del kinds["product_id"]
    columns = [
        h.c.pool_id,
        *([h.c.product_id] if products else []),
        h.c.user_name,
        h.c.granted_at,
        h.c.released_at,
        h.c.licenses,
    ]
    conditions = [h.c.granted_at < window.db(window.end)]
    if pool_ids is not None:
        conditions.append(h.c.pool_id.in_(list(pool_ids)))
    if granted_from is not None:
        conditions.append(h.c.granted_at >= window.db(granted_from))
    released_inside = h.c.released_at > window.db(window.start)
    query: sa.Select | sa.CompoundSelect
    if window.end - window.start <= RECENT_NS and not with_sessions:
        query = sa.union_all(
            sa.select(*columns).where(*conditions, released_inside),
            sa.select(*columns).where(*conditions, h.c.released_at.is_(None)),
        )
    else:
        query = sa.select(*columns).where(
            *conditions, sa.or_(h.c.released_at.is_(None), released_inside)
        )
        if with_sessions:
            query = query.add_columns(h.c.session_id, sessions_t.c.last_activity).join(
                sessions_t, sessions_t.c.id == h.c.session_id
            )
            kinds |= {"session_id": "int", "last_activity": "time"}
    frame = pd.DataFrame(fetch(conn, query, kinds))
    frame["reserved"] = False
    if reservations and not with_sessions:
        kept = _reservations(conn, window, kinds, pool_ids, granted_from)
        if len(kept):
            frame = pd.concat([frame, kept], ignore_index=True)
    frame["e"] = np.where(frame["e"] == NAT, window.until, frame["e"])
    return frame


def _reservations(
    conn: Connection,
    window: Window,
    kinds: Mapping[str, str],
    pool_ids: Sequence[int] | None,
    seen_from: int | None,
) -> pd.DataFrame:
    """The reservations seen during the window, as :func:`load_holds` gives them: the columns
    of `kinds` (the holds' own)."""
    r = reservations_t
    products = "product_id" in kinds
    query = sa.select(
        r.c.pool_id,
        *([pools_t.c.product_id] if products else []),
        (r.c.holder_kind + " " + r.c.holder).label("user"),
        r.c.seen_from,
        r.c.seen_until,
        r.c.licenses,
    ).where(
        r.c.seen_from < window.db(window.end),
        sa.or_(r.c.seen_until.is_(None), r.c.seen_until > window.db(window.start)),
    )
    if products:
        query = query.join_from(r, pools_t, pools_t.c.id == r.c.pool_id)
    if pool_ids is not None:
        query = query.where(r.c.pool_id.in_(list(pool_ids)))
    if seen_from is not None:
        query = query.where(r.c.seen_from >= window.db(seen_from))
    frame = pd.DataFrame(fetch(conn, query, kinds))
    frame["reserved"] = True
    return frame


def seat_steps(conn: Connection, catalog: Catalog) -> dict[int, tuple[Array, Array]]:
    """pool id -> the seats in force as a step function: change times (ns) and seats (float,
    NaN where unknown). Before its first entry a pool has its first entry's seats; a pool
    without history has its current seats throughout."""
    rows = conn.execute(
        sa.select(pool_seats_t.c.pool_id, pool_seats_t.c.valid_from, pool_seats_t.c.seats).order_by(
            pool_seats_t.c.pool_id, pool_seats_t.c.valid_from
        )
    ).all()
    history: dict[int, list[tuple[int, float]]] = {}
    for pool_id, valid_from, seats in rows:
        history.setdefault(pool_id, []).append(
            (int(pd.Timestamp(valid_from).value), np.nan if seats is None else float(seats))
        )
    steps = {}
    for pool in catalog.pools:
        current = np.nan if pool.seats is None else float(pool.seats)
        entries = history.get(pool.id) or [(0, current)]
        times = np.array([t for t, _ in entries], dtype=np.int64)
        values = np.array([v for _, v in entries], dtype=np.float64)
        times[0] = np.iinfo(np.int64).min  # the first entry also covers what came before
        steps[pool.id] = (times, values)
    return steps


def seats_at(step: tuple[Array, Array], x: Array) -> Array:
    """The seats in force (float, NaN unknown) at each instant of `x`."""
    times, values = step
    return values[np.maximum(np.searchsorted(times, x, side="right") - 1, 0)]


def load_denials(
    conn: Connection, lo: int, hi: int, window: Window, *, pool_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Denials with ``lo <= at < hi`` (of `pool_ids` only, if given): ``pool_id``, ``user``,
    ``at`` (ns)."""
    d = denials_t
    query = sa.select(d.c.pool_id, d.c.user_name, d.c.at).where(
        d.c.pool_id.is_not(None), d.c.at >= window.db(lo), d.c.at < window.db(hi)
    )
    if pool_ids is not None:
        query = query.where(d.c.pool_id.in_(list(pool_ids)))
    return pd.DataFrame(fetch(conn, query, {"pool_id": "int", "user": "text", "at": "time"}))


def pool_births(conn: Connection) -> dict[int, int]:
    """pool id -> when it was first observed (ns): created, or its first hold, reservation or
    denial if older."""

    def as_ns(value: datetime | str | None) -> int | None:
        return None if value is None else int(pd.Timestamp(value).value)

    births: dict[int, int] = {}
    for query in (
        sa.select(pools_t.c.id, pools_t.c.created_at),
        sa.select(holds_t.c.pool_id, sa.func.min(holds_t.c.granted_at)).group_by(holds_t.c.pool_id),
        sa.select(reservations_t.c.pool_id, sa.func.min(reservations_t.c.seen_from)).group_by(
            reservations_t.c.pool_id
        ),
        sa.select(denials_t.c.pool_id, sa.func.min(denials_t.c.at))
        .where(denials_t.c.pool_id.is_not(None))
        .group_by(denials_t.c.pool_id),
    ):
        for pool_id, when in conn.execute(query).all():
            ns = as_ns(when)
            if ns is not None:
                births[pool_id] = min(births.get(pool_id, ns), ns)
    return births
