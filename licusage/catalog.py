"""The catalogue: products, license types, license pools and named-user assignments."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import clock, rollup
from .db import store_operation, write
from .errors import InvalidInput, UnknownLicenseType, UnknownProduct
from .models import (
    CONCURRENT,
    NAMED,
    PER_CHECKOUT,
    PER_USER,
    assignments_t,
    pool_seats_t,
    pools_t,
    products_t,
    types_t,
)
from .validation import check_whole, user_identity

COUNTING_RULES = (PER_USER, PER_CHECKOUT)

DEFAULT_PRODUCTS = ("Case Management", "Reports Only", "RD Agent Assist", "RD Email Management")
NAMED_USER = "Named User"
CONCURRENT_USER = "Concurrent User"

MAX_NAME_LENGTH = 200  # the width of the name columns

# result columns of session_usage; a product may not take one of these names
RESERVED_COLUMNS = frozenset({"session_id", "user", "host", "started_at", "last_activity", "idle"})


@dataclass(frozen=True)
class Pool:
    id: int
    product_id: int
    product: str
    license_type_id: int
    license_type: str
    kind: str
    seats: int | None  # None: not known; those its seat history has in force now
    expires_at: datetime | None
    idle_limit_seconds: int | None
    counting: str = PER_USER  # PER_USER or PER_CHECKOUT (floating: licenses are summed)


@dataclass(frozen=True)
class Catalog:
    """A snapshot of the catalogue: names and ids of products, types and pools."""

    products: dict[str, int]  # name -> id, in catalogue order
    license_types: dict[str, int]  # name -> id
    pools: tuple[Pool, ...]

    def product_id(self, name: str) -> int:
        try:
            return self.products[name]
        except (KeyError, TypeError):
            known = ", ".join(self.products) or "none yet"
            raise UnknownProduct(f"unknown product {name!r} (products: {known})") from None

    def types_of(self, product: str) -> list[str]:
        """License type names that `product` has a pool for."""
        return [p.license_type for p in self.pools if p.product == product]

    def type_id(self, product: str, license_type: str) -> int:
        self.product_id(product)
        for pool in self.pools:
            if pool.product == product and pool.license_type == license_type:
                return pool.license_type_id
        known = ", ".join(self.types_of(product)) or "none"
        raise UnknownLicenseType(
            f"product {product!r} has no license type {license_type!r} (its types: {known})"
        )

    def pool(self, product: str, license_type: str) -> Pool | None:
        for pool in self.pools:
            if pool.product == product and pool.license_type == license_type:
                return pool
        return None

    def product_names(self) -> dict[int, str]:
        """Product id -> name."""
        return {product_id: name for name, product_id in self.products.items()}

    def type_names(self) -> dict[int, str]:
        """License type id -> name."""
        return {type_id: name for name, type_id in self.license_types.items()}


def _kind_for(type_name: str) -> str:
    return NAMED if "named" in type_name.casefold() else CONCURRENT


def read_catalog(conn: Connection | Engine) -> Catalog:
    """Load the catalogue in one round trip per table. A pool's seats are those its seat
    history has in force now: an increment of a license file that expired since the file's
    import no longer counts."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return read_catalog(c)
    due = sa.and_(
        pool_seats_t.c.pool_id == pools_t.c.id,
        pool_seats_t.c.valid_from <= clock.current_db_time(),
    )
    in_force = (
        sa.select(pool_seats_t.c.seats)
        .where(due)
        .order_by(pool_seats_t.c.valid_from.desc())
        .limit(1)
        .correlate(pools_t)
        .scalar_subquery()
    )
    seats = sa.case((sa.exists().where(due).correlate(pools_t), in_force), else_=pools_t.c.seats)
    products = {
        row.name: row.id
        for row in conn.execute(
            sa.select(products_t.c.id, products_t.c.name).order_by(products_t.c.id)
        )
    }
    types = {row.name: row.id for row in conn.execute(sa.select(types_t.c.id, types_t.c.name))}
    query = (
        sa.select(
            pools_t.c.id,
            pools_t.c.product_id,
            products_t.c.name.label("product"),
            pools_t.c.license_type_id,
            types_t.c.name.label("license_type"),
            types_t.c.kind,
            seats.label("seats"),
            pools_t.c.expires_at,
            pools_t.c.idle_limit_seconds,
            pools_t.c.counting,
        )
        .join(products_t, products_t.c.id == pools_t.c.product_id)
        .join(types_t, types_t.c.id == pools_t.c.license_type_id)
        .order_by(pools_t.c.product_id, pools_t.c.license_type_id)
    )
    pools = tuple(Pool(**row._mapping) for row in conn.execute(query))
    return Catalog(products=products, license_types=types, pools=pools)


@store_operation
def products(engine: Engine) -> list[str]:
    """Product names in catalogue order."""
    return list(read_catalog(engine).products)


def _get_or_create(conn: Connection, table: sa.Table, name: str, **values: object) -> int:
    found = conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            sa.insert(table).values(name=name, **values).returning(table.c.id)
        ).scalar_one()
    )


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, not {value!r}")
    if "\x00" in value:
        raise InvalidInput(f"{what} may not contain NUL characters")
    if len(value.strip()) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{what} is at most {MAX_NAME_LENGTH} characters long")
    return value.strip()


@store_operation
def add_pool(
    engine: Engine,
    product: str,
    license_type: str,
    seats: int | None,
    expires_at: datetime | None = None,
    *,
    idle_limit: float | None = None,
    counting: str = PER_USER,
) -> int:
    """Create (or update the seats, expiry and idle limit of) the pool of `product` and `license_type`.

    The product and license type are created when new; a type whose name contains "named" is a
    Named User type, any other is a Concurrent User type. `idle_limit` (seconds) is the pool's
    own idle-timeout for ``reap``. `counting` is ``per_user`` (a user's sessions share a seat)
    or ``per_checkout`` (floating licenses: every license checked out counts). `seats` None
    means not known. A change of seats is kept in the pool's seat history. Returns the pool id.
    """
    product = _check_name(product, "product")
    license_type = _check_name(license_type, "license type")
    if product in RESERVED_COLUMNS:
        raise InvalidInput(f"{product!r} is reserved for a result column; choose another name")
    if seats is not None:
        check_whole(seats, "seats", 0)
    if counting not in COUNTING_RULES:
        raise InvalidInput(f"counting must be one of {', '.join(COUNTING_RULES)}, not {counting!r}")
    if idle_limit is not None and (isinstance(idle_limit, bool) or idle_limit <= 0):
        raise InvalidInput(f"idle_limit must be a positive number of seconds, not {idle_limit!r}")
    idle_seconds = None if idle_limit is None else int(idle_limit)
    with write(engine) as conn:
        values = {
            "seats": seats,
            "expires_at": clock.to_db(expires_at),
            "idle_limit_seconds": idle_seconds,
            "counting": counting,
        }
        return ensure_pool(conn, product, license_type, values, origin="catalogue")


def ensure_pool(
    conn: Connection,
    product: str,
    license_type: str,
    values: Mapping[str, object],
    *,
    origin: str,
) -> int:
    """Create or update a pool inside the caller's transaction; its id.

    `values` are column values of ``license_pools``; a change of ``seats`` (or a new pool)
    adds an entry to the seat history, in force from now, noting `origin`.
    """
    when = clock.current_db_time()
    product_id = _get_or_create(conn, products_t, product)
    type_id = _get_or_create(conn, types_t, license_type, kind=_kind_for(license_type))
    existing = conn.execute(
        sa.select(pools_t.c.id, pools_t.c.seats, pools_t.c.counting).where(
            pools_t.c.product_id == product_id, pools_t.c.license_type_id == type_id
        )
    ).first()
    if existing is not None:
        pool_id = int(existing.id)
        if values:
            conn.execute(sa.update(pools_t).where(pools_t.c.id == pool_id).values(**values))
        if values.get("counting", existing.counting) != existing.counting:
            rollup.invalidate(conn, [pool_id])  # in use is counted another way from now on
        if "seats" in values and values["seats"] != existing.seats:
            record_seats(conn, pool_id, values["seats"], at=when, origin=origin)  # type: ignore[arg-type]
        return pool_id
    pool_id = int(
        conn.execute(
            sa.insert(pools_t)
            .values(product_id=product_id, license_type_id=type_id, created_at=when, **values)
            .returning(pools_t.c.id)
        ).scalar_one()
    )
    if values.get("seats") is not None:  # unknown seats need no entry: unknown is the default
        record_seats(conn, pool_id, values["seats"], at=when, origin=origin)  # type: ignore[arg-type]
    return pool_id


def _seats_in_force(
    conn: Connection, pool_id: int, at: datetime
) -> tuple[int | None, datetime] | None:
    """The entry of `pool_id`'s seat history in force at `at`: (seats, from when), if any."""
    row = conn.execute(
        sa.select(pool_seats_t.c.seats, pool_seats_t.c.valid_from)
        .where(pool_seats_t.c.pool_id == pool_id, pool_seats_t.c.valid_from <= at)
        .order_by(pool_seats_t.c.valid_from.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.seats, row.valid_from)


def record_seats(
    conn: Connection, pool_id: int, seats: int | None, *, at: datetime, origin: str
) -> bool:
    """Note that `pool_id` has `seats` (None: unknown) from `at` on (its seat history); False
    when its history already had them then."""
    at = clock.current_db_time(at)
    latest = _seats_in_force(conn, pool_id, at)
    if latest is not None and latest[0] == seats:
        return False
    if latest is not None and latest[1] == at:
        conn.execute(
            sa.update(pool_seats_t)
            .where(pool_seats_t.c.pool_id == pool_id, pool_seats_t.c.valid_from == at)
            .values(seats=seats, origin=origin)
        )
        return True
    conn.execute(
        sa.insert(pool_seats_t).values(pool_id=pool_id, valid_from=at, seats=seats, origin=origin)
    )
    return True


def forget_seats(
    conn: Connection,
    pool_id: int,
    *,
    after: datetime,
    origin: str,
    keep: Collection[tuple[datetime, int | None]] = (),
) -> int:
    """Remove the entries of `pool_id`'s seat history noted by `origin` after `after`, except
    those of `keep` ((from when, seats), naive UTC): counts foreseen (a license file's expiries)
    that a newer source supersedes. How many were removed."""
    p = pool_seats_t
    rows = conn.execute(
        sa.select(p.c.id, p.c.valid_from, p.c.seats).where(
            p.c.pool_id == pool_id,
            p.c.valid_from > clock.current_db_time(after),
            p.c.origin == origin,
        )
    ).all()
    kept = {(clock.current_db_time(at), seats) for at, seats in keep}
    gone = [
        row.id for row in rows if (clock.current_db_time(row.valid_from), row.seats) not in kept
    ]
    if gone:
        conn.execute(sa.delete(p).where(p.c.id.in_(gone)))
    return len(gone)


def refresh_pool_seats(conn: Connection, pool_id: int) -> None:
    """Set the pool's seats to the ones its history has in force now, after a change of its
    history (a count seen in the past must not overwrite a later one)."""
    in_force = _seats_in_force(conn, pool_id, clock.current_db_time())
    if in_force is not None:
        conn.execute(sa.update(pools_t).where(pools_t.c.id == pool_id).values(seats=in_force[0]))


def seats_to_come(conn: Connection, after: datetime) -> dict[int, list[tuple[datetime, int]]]:
    """pool id -> the known seat counts its history has in store after `after` (naive UTC),
    as (from when, seats) in time order: a license file's increments that expire."""
    rows = conn.execute(
        sa.select(pool_seats_t.c.pool_id, pool_seats_t.c.valid_from, pool_seats_t.c.seats)
        .where(
            pool_seats_t.c.valid_from > clock.current_db_time(after),
            pool_seats_t.c.seats.is_not(None),
        )
        .order_by(pool_seats_t.c.pool_id, pool_seats_t.c.valid_from)
    ).all()
    coming: dict[int, list[tuple[datetime, int]]] = {}
    for row in rows:
        coming.setdefault(row.pool_id, []).append((row.valid_from, row.seats))
    return coming


def set_pool_expiry(conn: Connection, pool_id: int, expires_at: datetime | None) -> bool:
    """Set when the pool's licenses expire (naive UTC; None: never) in the caller's
    transaction; whether that changed it."""
    changed = conn.execute(
        sa.update(pools_t)
        .where(pools_t.c.id == pool_id, pools_t.c.expires_at.is_distinct_from(expires_at))
        .values(expires_at=expires_at)
    )
    return changed.rowcount > 0


def outlive_expiries(
    conn: Connection, pool_ids: Collection[int], at: datetime
) -> dict[int, datetime]:
    """Pools a server grants seats of at `at` (naive UTC) have not expired by then: clear the
    expiries at or before `at` of `pool_ids`, in the caller's transaction; pool id -> the
    expiry cleared."""
    expired = conn.execute(
        sa.select(pools_t.c.id, pools_t.c.expires_at).where(
            pools_t.c.id.in_(list(pool_ids)), pools_t.c.expires_at <= at
        )
    ).all()
    if expired:
        conn.execute(
            sa.update(pools_t)
            .where(pools_t.c.id.in_([row.id for row in expired]))
            .values(expires_at=None)
        )
    return {row.id: row.expires_at for row in expired}


@store_operation
def seat_history(engine: Engine) -> pd.DataFrame:
    """Every pool's seats over time: ``product``, ``license_type``, ``valid_from`` (UTC),
    ``seats`` (Int64, missing when unknown) and ``origin``, in time order per pool."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        rows = conn.execute(
            sa.select(
                pool_seats_t.c.pool_id,
                pool_seats_t.c.valid_from,
                pool_seats_t.c.seats,
                pool_seats_t.c.origin,
            ).order_by(pool_seats_t.c.pool_id, pool_seats_t.c.valid_from)
        ).all()
    pools = {p.id: p for p in catalog.pools}
    frame = pd.DataFrame(
        [
            (
                pools[r.pool_id].product,
                pools[r.pool_id].license_type,
                r.valid_from,
                r.seats,
                r.origin,
            )
            for r in rows
        ],
        columns=["product", "license_type", "valid_from", "seats", "origin"],
    )
    frame["valid_from"] = pd.to_datetime(frame["valid_from"]).dt.tz_localize("UTC")
    frame["seats"] = frame["seats"].astype("Int64")
    return frame


@store_operation
def assign_named(engine: Engine, product: str, user: str, license_type: str = NAMED_USER) -> bool:
    """Name `user` on the Named User pool of `product`. Returns False if already named.

    Raises :class:`InvalidInput` when the pool has no seat left for another name.
    """
    user = user_identity(user)  # named seats belong to identities: Alice is alice
    with write(engine) as conn:
        pool = read_catalog(conn).pool(product, license_type)
        if pool is None:
            read_catalog(conn).type_id(product, license_type)  # raises the specific error
            raise UnknownLicenseType(f"product {product!r} has no {license_type!r} pool")
        if pool.kind != NAMED:
            raise InvalidInput(f"{product} / {license_type} is not a named-user pool")
        already = conn.execute(
            sa.select(sa.func.count()).where(
                assignments_t.c.pool_id == pool.id, assignments_t.c.user_name == user
            )
        ).scalar_one()
        if already:
            return False
        assigned = conn.execute(
            sa.select(sa.func.count()).where(assignments_t.c.pool_id == pool.id)
        ).scalar_one()
        if pool.seats is not None and assigned >= pool.seats:
            raise InvalidInput(
                f"{product} / {license_type} has all {pool.seats} named seats assigned"
            )
        conn.execute(
            sa.insert(assignments_t).values(
                pool_id=pool.id, user_name=user, assigned_at=clock.current_db_time()
            )
        )
        return True


@store_operation
def unassign_named(engine: Engine, product: str, user: str, license_type: str = NAMED_USER) -> bool:
    """Remove `user` from the named pool of `product`. Returns False if they were not named."""
    user = user_identity(user)
    with write(engine) as conn:
        pool = read_catalog(conn).pool(product, license_type)
        if pool is None:
            raise UnknownLicenseType(f"product {product!r} has no {license_type!r} pool")
        result = conn.execute(
            sa.delete(assignments_t).where(
                assignments_t.c.pool_id == pool.id, assignments_t.c.user_name == user
            )
        )
        return bool(result.rowcount)


@store_operation
def list_pools(engine: Engine) -> pd.DataFrame:
    """The pools: columns ``product``, ``license_type``, ``kind``, ``seats`` (Int64, missing
    when unknown), ``assigned`` (named users, for named pools), ``expires_at`` (UTC),
    ``idle_limit`` (a Timedelta) and ``counting`` (``per_user`` or ``per_checkout``)."""
    with engine.connect() as conn:
        catalog = read_catalog(conn)
        assigned: dict[int, int] = dict(
            conn.execute(
                sa.select(assignments_t.c.pool_id, sa.func.count()).group_by(
                    assignments_t.c.pool_id
                )
            ).all()
        )
    return pools_frame(
        catalog,
        "product license_type kind seats assigned expires_at idle_limit counting".split(),
        assigned=lambda p: assigned.get(p.id, 0) if p.kind == NAMED else pd.NA,
    ).astype({"assigned": "Int64"})


_POOL_COLUMNS: dict[str, Callable[[Pool], object]] = {
    "product": lambda p: p.product,
    "license_type": lambda p: p.license_type,
    "kind": lambda p: p.kind,
    "seats": lambda p: p.seats,
    "expires_at": lambda p: p.expires_at,
    "idle_limit": lambda p: (
        None if p.idle_limit_seconds is None else pd.Timedelta(seconds=p.idle_limit_seconds)
    ),
    "counting": lambda p: p.counting,
}


def pools_frame(
    catalog: Catalog, columns: Sequence[str], **values: Callable[[Pool], object]
) -> pd.DataFrame:
    """One row per pool of `catalog`, in its order, with `columns`: a pool's own (``product``,
    ``license_type``, ``kind``, ``seats`` as Int64, ``expires_at`` in UTC, ``idle_limit`` as a
    Timedelta, ``counting``) or one of `values` (column -> its value for a pool)."""
    getters = {**_POOL_COLUMNS, **values}
    rows = [{column: getters[column](p) for column in columns} for p in catalog.pools]
    frame = pd.DataFrame(rows, columns=list(columns))
    if "seats" in frame:
        frame["seats"] = frame["seats"].astype("Int64")
    if "expires_at" in frame:
        frame["expires_at"] = pd.to_datetime(frame["expires_at"]).dt.tz_localize("UTC")
    if "idle_limit" in frame:
        frame["idle_limit"] = pd.to_timedelta(frame["idle_limit"])
    return frame


def parse_license_filter(
    catalog: Catalog, license_types: Mapping[str, object] | None
) -> dict[int, list[int]]:
    """Validate a product → types filter and return product id → type ids (empty = any)."""
    if license_types is None:
        return {}
    if not isinstance(license_types, Mapping):
        raise InvalidInput("license_types must map product names to collections of type names")
    parsed: dict[int, list[int]] = {}
    for product, types in license_types.items():
        product_id = catalog.product_id(product)
        if types is None:
            continue
        if isinstance(types, str):
            types = [types]
        try:
            names = list(types)  # type: ignore[call-overload]
        except TypeError:
            raise InvalidInput(
                f"license types of {product!r} must be a collection of names"
            ) from None
        ids = sorted({catalog.type_id(product, name) for name in names})
        if ids:
            parsed[product_id] = ids
    return parsed
