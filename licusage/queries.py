"""Read-only queries over the store: pure functions, an Engine and filters in, a DataFrame out.

The dashboard, the CLI and the notebooks all call these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypedDict, Unpack

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import clock
from .audit import audit_actors as audit_actors  # the audit reads live in licusage.audit
from .audit import audit_log as audit_log
from .catalog import Catalog, parse_license_filter, pools_frame, read_catalog, seats_to_come
from .db import describe_db_error, is_sqlite, store_operation
from .errors import InvalidInput, StoreUnavailable
from .models import PER_CHECKOUT, denials_t, holds_t, reservations_t, sessions_t
from .sessions import check_session_id, rows_for_ids
from .validation import MAX_USER_LENGTH, check_whole, lenient_identity

BASE_COLUMNS = ["session_id", "user", "host", "started_at", "last_activity", "idle", "source"]


def _check_timedelta(value: object, name: str) -> timedelta:
    if isinstance(value, pd.Timedelta):
        if pd.isna(value):
            raise InvalidInput(f"{name} must be a duration, not NaT")
        value = value.to_pytimedelta()
    if not isinstance(value, timedelta):
        raise InvalidInput(f"{name} must be a timedelta, not {value!r}")
    if value < timedelta(0):
        raise InvalidInput(f"{name} must not be negative, got {value}")
    return value


def _substring_needle(
    name: str, text: str | None, needle_of: Callable[[str], str], longest: int
) -> str | None:
    """The needle of a substring filter (the user and host filters' one rule): None for blank
    (None, empty or only spaces: all rows), "" when no stored value can contain it;
    InvalidInput when `text` is not text."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput(f"{name} filter must be text, not {text!r}")
    needle = needle_of(text)
    if not needle:
        return None
    return "" if "\x00" in needle or len(needle) > longest else needle


def user_condition(user: str | None) -> sa.ColumnElement[bool] | None:
    """The SQL condition of the user filter: a case-insensitive, literal substring match.

    Blank (None, empty or only spaces) means all users; surrounding spaces are ignored.
    """
    # what sessions.user_key holds (licusage.validation); a filter longer than any user name
    # matches nothing
    needle = _substring_needle("user", user, lenient_identity, MAX_USER_LENGTH)
    if needle is None:
        return None
    return sessions_t.c.user_key.contains(needle, autoescape=True) if needle else sa.false()


def host_condition(host: str | None) -> sa.ColumnElement[bool] | None:
    """The SQL condition of the host filter: a case-insensitive, literal substring match.

    Blank (None, empty or only spaces) means all hosts; surrounding spaces are ignored.
    """
    needle = _substring_needle("host", host, str.strip, 255)
    if needle is None:
        return None
    return sessions_t.c.host.icontains(needle, autoescape=True) if needle else sa.false()


SORT_KEYS = ("session_id", "user", "host", "started_at", "last_activity", "idle", "source")


def _check_sort(sort: Sequence[tuple[str, bool]] | None, products: Collection[str]) -> None:
    for item in sort or ():
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidInput(f"sort items must be (column, ascending) pairs, not {item!r}")
        key, ascending = item
        if key not in SORT_KEYS and key not in products:
            raise InvalidInput(
                f"cannot sort by {key!r}: use one of {', '.join(SORT_KEYS)} or a product"
            )
        if not isinstance(ascending, bool):
            raise InvalidInput(f"sort direction of {key!r} must be True or False")


class FilterFields(TypedDict, total=False):
    """The fields of a :class:`SessionFilter` as keyword arguments of the session queries
    (``session_usage(engine, user="smith")``): one declaration for all of them."""

    user: str | None
    license_types: Mapping[str, Collection[str] | None] | None
    idle_over: timedelta | None
    host: str | None
    source: str | None


@dataclass(frozen=True)
class SessionFilter:
    """Which active sessions a listing shows; validated once, turned into SQL once.

    - `user`: case-insensitive substring of the user name, every character literal; blank = all.
    - `license_types`: product -> license type names; a missing or empty product means any type,
      several products must all match (names are checked against the catalogue when queried:
      :class:`~licusage.errors.UnknownProduct` / :class:`~licusage.errors.UnknownLicenseType`).
    - `idle_over`: keep sessions whose last activity is at least this long ago.
    - `host`: case-insensitive substring of the client host, every character literal.
    - `source`: where the sessions came from, exactly: ``"app"`` (the application API) or the
      name of a license server given at import (``--server NAME``).

    Every session query (:func:`session_usage`, :func:`session_usage_page`,
    :func:`session_usage_counts`, ...) takes one, or its fields as keyword arguments
    (:class:`FilterFields`); :meth:`code` is the notebook line that reproduces it.
    Raises :class:`~licusage.errors.InvalidInput` for arguments of the wrong shape.
    """

    user: str | None = None
    license_types: Mapping[str, Collection[str] | None] | None = None
    idle_over: timedelta | None = None
    host: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.user is not None and not isinstance(self.user, str):
            raise InvalidInput(f"user filter must be text, not {self.user!r}")
        if self.host is not None and not isinstance(self.host, str):
            raise InvalidInput(f"host filter must be text, not {self.host!r}")
        if self.source is not None and (not isinstance(self.source, str) or not self.source):
            raise InvalidInput(f"source filter must be a source's name, not {self.source!r}")
        if self.idle_over is not None:
            object.__setattr__(self, "idle_over", _check_timedelta(self.idle_over, "idle_over"))
        if self.license_types is not None:
            if not isinstance(self.license_types, Mapping):
                raise InvalidInput(
                    "license_types must map product names to collections of type names"
                )
            types: dict[str, tuple[str, ...] | None] = {}
            for product, names in self.license_types.items():
                if names is None or isinstance(names, str):
                    types[product] = None if names is None else (names,)
                    continue
                try:
                    types[product] = tuple(names)
                except TypeError:
                    raise InvalidInput(
                        f"license types of {product!r} must be a collection of names"
                    ) from None
            object.__setattr__(self, "license_types", MappingProxyType(types))

    def __hash__(self) -> int:
        types = None if self.license_types is None else tuple(self.license_types.items())
        return hash((self.user, types, self.idle_over, self.host, self.source))

    @classmethod
    def of(
        cls, where: SessionFilter | None = None, **filters: Unpack[FilterFields]
    ) -> SessionFilter:
        """`where`, else a filter of the keyword arguments (not both): what every session
        query does with its filter arguments."""
        unknown = sorted(set(filters) - set(FilterFields.__annotations__))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        if where is None:
            return cls(**filters)
        if not isinstance(where, SessionFilter):
            raise InvalidInput(f"the filter must be a SessionFilter, not {where!r}")
        if any(v is not None for v in filters.values()):
            raise InvalidInput("give a SessionFilter or keyword filters, not both")
        return where

    def kwargs(self) -> dict[str, Any]:
        """The filter as keyword arguments of :func:`session_usage` (types as lists)."""
        types = (
            None
            if self.license_types is None
            else {p: None if t is None else list(t) for p, t in self.license_types.items()}
        )
        kwargs: dict[str, Any] = {
            "user": self.user,
            "license_types": types,
            "idle_over": self.idle_over,
        }
        if self.host is not None:
            kwargs["host"] = self.host
        if self.source is not None:
            kwargs["source"] = self.source
        return kwargs

    def code(self, call: str = "queries.session_usage", max_user: int = 60) -> str:
        """The notebook line that reproduces the listing, e.g.
        ``queries.session_usage(engine, user='alice')`` (a very long user text is shortened)."""
        args = []
        for name, value in self.kwargs().items():
            if value is None:
                continue
            if name in ("user", "host") and len(value) > max_user:
                args.append(f"{name}={value[:max_user]!r}…  # {len(value):,} characters")
            elif name == "idle_over":
                args.append(f"idle_over=pd.Timedelta({str(pd.Timedelta(value))!r})")
            else:
                args.append(f"{name}={value!r}")
        return f"{call}({', '.join(['engine', *args])})"

    def clauses(
        self, catalog: Catalog, now: datetime, *, every_product: bool
    ) -> tuple[sa.FromClause, list[sa.ColumnElement[bool]], list[sa.FromClause]]:
        """The FROM and WHERE of the active sessions this filter keeps, as of `now`.

        With `every_product`, every product of the catalogue is LEFT JOINed (alias ``h<i>``, in
        catalogue order, returned for the listing's columns) and type filters go in WHERE;
        without, only the filtered products are joined (inner joins), which is all a count
        needs: a product without a type filter does not change which sessions match.
        """
        type_filter = parse_license_filter(catalog, self.license_types)
        s = sessions_t
        from_clause: sa.FromClause = s
        conditions: list[sa.ColumnElement[bool]] = [s.c.ended_at.is_(None)]
        holds: list[sa.FromClause] = []
        for position, product_id in enumerate(catalog.products.values()):
            if not every_product and product_id not in type_filter:
                continue
            hold = holds_t.alias(f"h{position}")
            # an active session's licenses are all unreleased: saying so lets PostgreSQL look
            # them up by index instead of hashing every hold of the history (2.8 s -> 0.5 s)
            joined = sa.and_(
                hold.c.session_id == s.c.id,
                hold.c.product_id == product_id,
                hold.c.released_at.is_(None),
            )
            if every_product:
                from_clause = from_clause.outerjoin(hold, joined)
                holds.append(hold)
                if product_id in type_filter:
                    conditions.append(hold.c.license_type_id.in_(type_filter[product_id]))
            else:
                from_clause = from_clause.join(
                    hold, sa.and_(joined, hold.c.license_type_id.in_(type_filter[product_id]))
                )
        for condition in (user_condition(self.user), host_condition(self.host)):
            if condition is not None:
                conditions.append(condition)
        if self.source is not None:
            conditions.append(s.c.source == self.source)
        if self.idle_over is not None:
            try:
                cutoff = clock.to_db(now - self.idle_over)
            except OverflowError:
                conditions.append(sa.false())  # idle longer than the calendar allows: nobody
            else:
                conditions.append(s.c.last_activity <= cutoff)
        return from_clause, conditions, holds


def _timestamps(values: pd.Series) -> pd.Series:
    """Naive-UTC values from the driver (strings on SQLite) as tz-aware UTC timestamps."""
    first = values.dropna().iloc[0] if values.notna().any() else None
    if isinstance(first, str):
        parsed = pd.to_datetime(values, format="ISO8601")
    else:
        parsed = pd.to_datetime(values)
    # microseconds on every pandas (2.x parses to nanoseconds, 3.x to microseconds)
    return parsed.dt.tz_localize("UTC").astype("datetime64[us, UTC]")


def _empty_timestamps(values: pd.Series) -> pd.Series:
    return pd.Series(values, dtype="datetime64[us]").dt.tz_localize("UTC")


def _usage_select(
    engine_or_conn: Engine | sa.Connection,
    catalog: Catalog,
    where: SessionFilter,
    now: datetime,
    sort: Sequence[tuple[str, bool]] | None = None,
) -> sa.Select:
    """The one SQL statement behind :func:`session_usage` (one LEFT JOIN per product).

    `sort`: (column, ascending) pairs, a column of :data:`SORT_KEYS` or a product name; the
    default order (oldest last activity first) and the session id break ties."""
    # SQLite: fetch timestamps as their stored text and parse them vectorised in pandas
    as_text = is_sqlite(engine_or_conn)

    def ts(column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.type_coerce(column, sa.String) if as_text else column

    s = sessions_t
    from_clause, conditions, holds = where.clauses(catalog, now, every_product=True)
    columns: list[sa.ColumnElement] = [
        s.c.id.label("session_id"),
        s.c.user_name.label("user"),
        s.c.host,
        ts(s.c.started_at).label("started_at"),
        ts(s.c.last_activity).label("last_activity"),
        s.c.source,
        *(hold.c.license_type_id.label(f"p{i}") for i, hold in enumerate(holds)),
    ]
    type_names = catalog.type_names()
    product_columns = {
        product: sa.case(type_names, value=hold.c.license_type_id)
        for product, hold in zip(catalog.products, holds, strict=True)
    }
    _check_sort(sort, product_columns)
    keys: dict[str, sa.ColumnElement] = {
        "session_id": s.c.id,
        "user": s.c.user_key,
        "host": s.c.host,
        "started_at": s.c.started_at,
        "last_activity": s.c.last_activity,
        "idle": s.c.last_activity,  # idle longest first = last activity oldest first
        "source": s.c.source,
        **product_columns,
    }
    order: list[sa.ColumnElement] = []
    for key, ascending in sort or ():
        up = not ascending if key == "idle" else ascending
        order.append(keys[key].asc() if up else keys[key].desc())
    return (
        sa.select(*columns)
        .select_from(from_clause)
        .where(*conditions)
        .order_by(*order, s.c.last_activity, s.c.id)
    )


@store_operation
def session_usage(
    engine: Engine,
    where: SessionFilter | None = None,
    **filters: Unpack[FilterFields],
) -> pd.DataFrame:
    """The active sessions matching the filter, oldest last activity first.

    The filter is a :class:`SessionFilter` or its fields as keyword arguments:

    - `user`: case-insensitive substring of the user name, every character literal; blank = all.
    - `license_types`: product -> license type names; a missing or empty product means any type,
      several products must all match. Unknown names raise
      :class:`~licusage.errors.UnknownProduct` / :class:`~licusage.errors.UnknownLicenseType`.
    - `idle_over`: keep sessions whose last activity is at least this long ago.
    - `host`: case-insensitive substring of the client host, the same way; blank = all.
    - `source`: ``"app"`` or a license server's name, exactly.

    Columns: ``session_id``, ``user``, ``host``, ``started_at`` and ``last_activity`` (UTC),
    ``idle`` (Timedelta), ``source`` (``app`` or the license server's name), then one column per product of the catalogue, named as the product,
    holding the license type held (missing when the session holds none of that product).
    """
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        rows = conn.execute(_usage_select(conn, catalog, where, now)).all()
    return usage_frame(rows, catalog, now)


def usage_frame(rows: Sequence[Any], catalog: Catalog, now: datetime) -> pd.DataFrame:
    """Build session_usage's DataFrame from rows of :func:`_usage_select`."""
    product_names = list(catalog.products)
    raw_columns = [*BASE_COLUMNS[:5], "source"] + [f"p{i}" for i in range(len(product_names))]
    # plain tuples: pandas probes each SQLAlchemy Row with hasattr(), which costs an exception
    # per row (4x the time of the whole conversion at 100k rows)
    records = [tuple(row) for row in rows]
    frame = pd.DataFrame.from_records(records, columns=raw_columns, coerce_float=False)
    convert = _timestamps if len(frame) else _empty_timestamps
    frame["session_id"] = frame["session_id"].astype("int64")
    frame["user"] = frame["user"].astype("string")
    frame["host"] = frame["host"].astype("string")
    frame["started_at"] = convert(frame["started_at"])
    frame["last_activity"] = convert(frame["last_activity"])
    frame.insert(5, "idle", pd.Timestamp(now) - frame["last_activity"])
    frame["source"] = frame["source"].astype("string")
    type_names = catalog.type_names()
    for position, name in enumerate(product_names):
        frame[name] = frame.pop(f"p{position}").map(type_names).astype("string")
    return frame


def pools_in_use(conn: Any, catalog: Catalog) -> tuple[dict[int, int], dict[int, int]]:
    """(in use, reserved) per pool id right now, by each pool's counting rule.

    ``per_user``: distinct users holding the pool in an active session; ``per_checkout``: the
    licenses held. Reservations a license server keeps (``lmstat`` RESERVATIONs) count as in use
    and are also returned apart.
    """
    h = holds_t
    active = h.c.released_at.is_(None)
    # the distinct (pool, user) pairs first: SQLite reads them in order from the partial index
    # of the active holds (ix_holds_active_pool_user); count(DISTINCT) grouped by pool made it
    # walk every hold of the history by ix_holds_pool_granted (1M active: 2.7 s -> 0.15 s)
    pairs = sa.select(h.c.pool_id, h.c.user_name).where(active).distinct().subquery()
    users: dict[int, int] = dict(
        conn.execute(sa.select(pairs.c.pool_id, sa.func.count()).group_by(pairs.c.pool_id)).all()
    )
    per_checkout = [pool.id for pool in catalog.pools if pool.counting == PER_CHECKOUT]
    licenses: dict[int, int] = (
        dict(
            conn.execute(
                sa.select(h.c.pool_id, sa.func.sum(h.c.licenses))
                .where(active, h.c.pool_id.in_(per_checkout))
                .group_by(h.c.pool_id)
            ).all()
        )
        if per_checkout  # only those pools count licenses rather than users
        else {}
    )
    reserved: dict[int, int] = {
        int(pool_id): int(count)
        for pool_id, count in conn.execute(
            sa.select(reservations_t.c.pool_id, sa.func.sum(reservations_t.c.licenses))
            .where(reservations_t.c.seen_until.is_(None))
            .group_by(reservations_t.c.pool_id)
        ).all()
    }
    in_use = {}
    for pool in catalog.pools:
        held = licenses if pool.counting == PER_CHECKOUT else users
        in_use[pool.id] = int(held.get(pool.id, 0)) + reserved.get(pool.id, 0)
    return in_use, reserved


POOL_USAGE_COLUMNS = (
    "product license_type kind seats in_use free denials_today expires_at counting reserved"
    " next_seats next_seats_at"
).split()


@store_operation
def pool_usage(engine: Engine) -> pd.DataFrame:
    """Seats per pool right now.

    Columns: ``product``, ``license_type``, ``kind``, ``seats`` (Int64; missing when not known,
    e.g. a feature seen only in a FlexLM debug log), ``in_use`` (by the pool's counting rule:
    distinct users holding the pool in an active session, or for a ``per_checkout`` pool the
    licenses checked out; reservations included), ``free`` (seats - in_use, never below 0;
    missing when seats are unknown), ``denials_today`` (denials since midnight UTC),
    ``expires_at``, then ``counting``, ``reserved`` (licenses a server keeps reserved,
    counted in ``in_use``), ``next_seats`` (Int64) and ``next_seats_at`` (UTC): the next seat
    count the pool's history has in store and from when, e.g. 50 when an increment of 2 of a
    license file's 52 seats expires (missing when none is).
    """
    now = clock.to_utc(clock.now())
    midnight = clock.to_db(now.replace(hour=0, minute=0, second=0, microsecond=0))
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        in_use, reserved = pools_in_use(conn, catalog)
        coming = {pool_id: entries[0] for pool_id, entries in seats_to_come(conn, now).items()}
        denied: dict[int, int] = dict(
            conn.execute(
                sa.select(denials_t.c.pool_id, sa.func.count())
                .where(denials_t.c.at >= midnight)
                .group_by(denials_t.c.pool_id)
            ).all()
        )
    frame = pools_frame(
        catalog,
        POOL_USAGE_COLUMNS,
        in_use=lambda p: in_use.get(p.id, 0),
        free=lambda p: None if p.seats is None else max(p.seats - in_use.get(p.id, 0), 0),
        denials_today=lambda p: denied.get(p.id, 0),
        reserved=lambda p: reserved.get(p.id, 0),
        next_seats=lambda p: coming[p.id][1] if p.id in coming else None,
        next_seats_at=lambda p: coming[p.id][0] if p.id in coming else None,
    )
    frame["next_seats_at"] = pd.to_datetime(frame["next_seats_at"]).dt.tz_localize("UTC")
    return frame.astype(
        {
            "in_use": "int64",
            "denials_today": "int64",
            "reserved": "int64",
            "free": "Int64",
            "next_seats": "Int64",
        }
    )


@store_operation
def session_licenses(engine: Engine, session_ids: Collection[int]) -> pd.DataFrame:
    """The licenses the given active sessions hold: ``session_id``, ``user``, ``product``,
    ``license_type``, ``licenses`` (how many: more than 1 only for a license server's
    checkout of several). What logging them out would give back."""
    ids = sorted({check_session_id(i) for i in session_ids})
    with engine.connect() as conn:
        return held_licenses(conn, read_catalog(conn), ids)


def held_licenses(conn: sa.Connection, catalog: Catalog, ids: list[int]) -> pd.DataFrame:
    """:func:`session_licenses` of checked `ids`, inside the caller's connection."""
    query = (
        sa.select(
            holds_t.c.session_id,
            sessions_t.c.user_name,  # the spelling (holds keep the identity)
            holds_t.c.product_id,
            holds_t.c.license_type_id,
            holds_t.c.licenses,
        )
        .join(sessions_t, sessions_t.c.id == holds_t.c.session_id)
        .where(holds_t.c.released_at.is_(None))
        .order_by(holds_t.c.id)
    )
    rows = rows_for_ids(conn, query, holds_t.c.session_id, ids)
    product_names, type_names = catalog.product_names(), catalog.type_names()
    frame = pd.DataFrame(
        [(r[0], r[1], product_names[r[2]], type_names[r[3]], r[4]) for r in rows],
        columns=["session_id", "user", "product", "license_type", "licenses"],
    )
    return frame.astype({"session_id": "int64", "licenses": "int64"})


SESSION_COLUMNS = [
    "session_id",
    "user",
    "host",
    "started_at",
    "last_activity",
    "ended_at",
    "end_reason",
    "ended_by",
]


@store_operation
def sessions_by_id(engine: Engine, session_ids: Collection[int]) -> pd.DataFrame:
    """The stored sessions among `session_ids`, active or ended, in id order.

    Columns: ``session_id``, ``user``, ``host``, ``started_at``, ``last_activity``,
    ``ended_at`` (UTC; missing while active), ``end_reason``, ``ended_by``. Ids not in the store
    are left out. Raises :class:`~licusage.errors.InvalidInput` for ids that are not integers.
    """
    ids = sorted({check_session_id(i) for i in session_ids})
    s = sessions_t
    query = sa.select(
        s.c.id,
        s.c.user_name,
        s.c.host,
        s.c.started_at,
        s.c.last_activity,
        s.c.ended_at,
        s.c.end_reason,
        s.c.ended_by,
    ).order_by(s.c.id)
    with engine.connect() as conn:
        rows = rows_for_ids(conn, query, s.c.id, ids)
    frame = pd.DataFrame.from_records(rows, columns=SESSION_COLUMNS, coerce_float=False)
    frame["session_id"] = frame["session_id"].astype("int64")
    for column in ("user", "host", "end_reason", "ended_by"):
        frame[column] = frame[column].astype("string")
    for column in ("started_at", "last_activity", "ended_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]").dt.tz_localize("UTC")
    return frame


@store_operation
def session_usage_page(
    engine: Engine,
    where: SessionFilter | None = None,
    *,
    offset: int = 0,
    limit: int = 25,
    sort: Sequence[tuple[str, bool]] | None = None,
    **filters: Unpack[FilterFields],
) -> pd.DataFrame:
    """Rows `offset` to `offset + limit` of :func:`session_usage` with the same filter, in its
    order (oldest last activity first, then session id), sorted and cut by the database.

    `sort`: ``(column, ascending)`` pairs applied first, each column one of :data:`SORT_KEYS`
    (``idle`` ascending = most recent activity first) or a product name (by license type
    name); the default order breaks ties. Same columns as :func:`session_usage`; a page past
    the end is empty.
    """
    check_whole(offset, "offset", 0)
    check_whole(limit, "limit", 0)
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        query = _usage_select(conn, catalog, where, now, sort)
        # the page's ids first (the database sorts sessions, joining only what filters or
        # sorts need), then their licenses: one LEFT JOIN per product for `limit` rows only
        page = query.with_only_columns(sessions_t.c.id).limit(limit).offset(offset)
        rows = conn.execute(query.where(sessions_t.c.id.in_(page.scalar_subquery()))).all()
    return usage_frame(rows, catalog, now)


@store_operation
def session_usage_ids(
    engine: Engine,
    where: SessionFilter | None = None,
    **filters: Unpack[FilterFields],
) -> list[int]:
    """The session ids of :func:`session_usage` with the same filter, in its order: what
    "select all matching" acts on (ids only, read by the database)."""
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    with engine.connect() as conn:
        query = _usage_select(conn, read_catalog(conn), where, now)
        return [int(i) for i in conn.execute(query.with_only_columns(sessions_t.c.id)).scalars()]


def iter_session_usage(
    engine: Engine,
    where: SessionFilter | None = None,
    *,
    batch_size: int = 10_000,
    **filters: Unpack[FilterFields],
) -> Iterator[pd.DataFrame]:
    """:func:`session_usage` in DataFrames of at most `batch_size` rows, read from one
    streaming cursor: an export of a million sessions never holds them all."""
    check_whole(batch_size, "batch_size", 1)
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    try:
        with engine.connect() as conn:
            catalog = read_catalog(conn)
            query = _usage_select(conn, catalog, where, now)
            result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
                query
            )
            empty = True
            for rows in result.partitions(batch_size):
                empty = False
                yield usage_frame(rows, catalog, now)
            if empty:
                yield usage_frame([], catalog, now)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        raise StoreUnavailable(describe_db_error(error)) from error


@store_operation
def session_usage_counts(
    engine: Engine,
    where: SessionFilter | None = None,
    **filters: Unpack[FilterFields],
) -> tuple[int, int]:
    """(sessions, distinct users) of :func:`session_usage` with the same filter, counted by
    the database (no rows fetched)."""
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    s = sessions_t
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        from_clause, conditions, _ = where.clauses(catalog, now, every_product=False)
        sessions, users = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(s.c.user_key)))
            .select_from(from_clause)
            .where(*conditions)
        ).one()
    return int(sessions), int(users)


@store_operation
def session_usage_after(
    engine: Engine,
    where: SessionFilter | None = None,
    *,
    after: tuple[datetime, int] | None = None,
    limit: int = 100,
    **filters: Unpack[FilterFields],
) -> pd.DataFrame:
    """Up to `limit` rows of :func:`session_usage` (same filter, same order: last activity,
    then session id) that come after the row (`last_activity`, `session_id`) `after`.

    Keyset paging: a page is found by the index however deep it is, and sessions that start or
    end between two requests neither repeat nor shift the pages that follow. Same columns as
    :func:`session_usage`.
    """
    check_whole(limit, "limit", 0)
    where = SessionFilter.of(where, **filters)
    now = clock.now()
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        query = _usage_select(conn, catalog, where, now)
        if after is not None:
            at, last_id = after
            if not isinstance(at, datetime):
                raise InvalidInput(f"after must be (datetime, session id), not {after!r}")
            last_id = check_session_id(last_id)
            cut = clock.to_db(at)
            s = sessions_t
            query = query.where(
                sa.or_(
                    s.c.last_activity > cut,
                    sa.and_(s.c.last_activity == cut, s.c.id > last_id),
                )
            )
        rows = conn.execute(query.limit(limit)).all()
    return usage_frame(rows, catalog, now)


@store_operation
def pool_counters(engine: Engine) -> pd.DataFrame:
    """Per pool, counted by the database: ``product``, ``license_type``, ``sessions_active``
    (active sessions holding a license of the pool) and ``denials_total`` (every denial ever
    recorded: the store never deletes one, so it only grows, as a Prometheus counter must)."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        active: dict[int, int] = dict(
            conn.execute(
                sa.select(holds_t.c.pool_id, sa.func.count(sa.distinct(holds_t.c.session_id)))
                .where(holds_t.c.released_at.is_(None))
                .group_by(holds_t.c.pool_id)
            ).all()
        )
        denied: dict[int, int] = dict(
            conn.execute(
                sa.select(denials_t.c.pool_id, sa.func.count()).group_by(denials_t.c.pool_id)
            ).all()
        )
    frame = pd.DataFrame(
        [
            (p.product, p.license_type, active.get(p.id, 0), denied.get(p.id, 0))
            for p in catalog.pools
        ],
        columns=["product", "license_type", "sessions_active", "denials_total"],
    )
    for column in ("sessions_active", "denials_total"):
        frame[column] = frame[column].astype("int64")
    return frame


@store_operation
def held_between(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Holds that overlap [`start`, `end`): ``product``, ``license_type``, ``user``,
    ``granted_at`` and ``released_at`` (naive UTC; missing while held)."""
    lo, hi = clock.to_db(start), clock.to_db(end)
    h = holds_t
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        rows = conn.execute(
            sa.select(h.c.pool_id, h.c.user_name, h.c.granted_at, h.c.released_at).where(
                h.c.granted_at < hi, sa.or_(h.c.released_at.is_(None), h.c.released_at > lo)
            )
        ).all()
    pools = {p.id: p for p in catalog.pools}
    return pd.DataFrame(
        [
            (pools[r[0]].product, pools[r[0]].license_type, r[1], r[2], r[3])
            for r in rows
            if r[0] in pools
        ],
        columns=["product", "license_type", "user", "granted_at", "released_at"],
    )


@store_operation
def denial_counts(engine: Engine, since: datetime) -> pd.DataFrame:
    """Denials per pool since `since`: ``product``, ``license_type``, ``denials``."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        counts: dict[int, int] = dict(
            conn.execute(
                sa.select(denials_t.c.pool_id, sa.func.count())
                .where(denials_t.c.at >= clock.to_db(since))
                .group_by(denials_t.c.pool_id)
            ).all()
        )
    return pd.DataFrame(
        [(p.product, p.license_type, counts.get(p.id, 0)) for p in catalog.pools],
        columns=["product", "license_type", "denials"],
    )


@store_operation
def sessions_started_before(engine: Engine, before: datetime) -> pd.DataFrame:
    """Active sessions started before `before`, oldest first: ``session_id``, ``user``,
    ``started_at`` (naive UTC)."""
    s = sessions_t
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.c.id, s.c.user_name, s.c.started_at)
            .where(s.c.ended_at.is_(None), s.c.started_at < clock.to_db(before))
            .order_by(s.c.started_at, s.c.id)
        ).all()
    return pd.DataFrame(rows, columns=["session_id", "user", "started_at"])
