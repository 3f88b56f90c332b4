"""The catalogue: pools are created and updated, named users assigned, pools listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from licusage import catalog
from licusage.errors import InvalidInput, UnknownLicenseType, UnknownProduct
from licusage.models import CONCURRENT, NAMED, assignments_t, pools_t, products_t, types_t

CM = "Case Management"


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_add_pool_creates_product_type_and_pool(engine):
    pool_id = catalog.add_pool(engine, CM, "Concurrent User", 5)
    assert isinstance(pool_id, int)
    cat = catalog.read_catalog(engine)
    assert list(cat.products) == [CM]
    assert set(cat.license_types) == {"Concurrent User"}
    (pool,) = cat.pools
    assert (pool.id, pool.product, pool.license_type, pool.seats) == (
        pool_id,
        CM,
        "Concurrent User",
        5,
    )
    assert pool.kind == CONCURRENT
    assert pool.expires_at is None


def test_second_add_pool_changes_the_seats_and_creates_nothing(engine):
    first = catalog.add_pool(engine, CM, "Concurrent User", 5)
    second = catalog.add_pool(engine, CM, "Concurrent User", 9)
    assert first == second
    assert (_count(engine, pools_t), _count(engine, products_t), _count(engine, types_t)) == (
        1,
        1,
        1,
    )
    assert catalog.read_catalog(engine).pools[0].seats == 9


def test_a_type_named_named_is_a_named_pool(engine):
    catalog.add_pool(engine, CM, "Named User", 2)
    catalog.add_pool(engine, "Reports Only", "Named User", 1)
    cat = catalog.read_catalog(engine)
    assert {p.kind for p in cat.pools} == {NAMED}
    assert _count(engine, types_t) == 1  # one type shared by both products


def test_add_pool_keeps_the_expiry_in_utc(engine):
    expiry = datetime(2026, 6, 30, 18, 0, tzinfo=UTC) + timedelta(hours=0)
    catalog.add_pool(engine, CM, "Seasonal", 3, expires_at=expiry)
    frame = catalog.list_pools(engine)
    assert frame.loc[0, "expires_at"] == pd.Timestamp(expiry)


@pytest.mark.parametrize(
    ("product", "license_type", "seats"),
    [
        ("", "Concurrent User", 1),
        ("   ", "Concurrent User", 1),
        (CM, "", 1),
        (CM, "Concurrent User", -1),
        (CM, "Concurrent User", 1.5),
        (CM, "Concurrent User", True),
        (CM, "Concurrent User", "3"),
        ("user", "Concurrent User", 1),  # a result column of session_usage
        ("x" * 201, "Concurrent User", 1),
        ("nul\x00", "Concurrent User", 1),
    ],
)
def test_add_pool_refuses_bad_input_and_writes_nothing(sqlite_engine, product, license_type, seats):
    with pytest.raises(InvalidInput):
        catalog.add_pool(sqlite_engine, product, license_type, seats)
    assert _count(sqlite_engine, products_t) == 0
    assert _count(sqlite_engine, pools_t) == 0


def test_assign_named_names_a_user_once(engine):
    catalog.add_pool(engine, CM, "Named User", 2)
    assert catalog.assign_named(engine, CM, "alice") is True
    assert catalog.assign_named(engine, CM, "alice") is False
    assert _count(engine, assignments_t) == 1


def test_assign_named_refuses_more_names_than_seats(engine):
    catalog.add_pool(engine, CM, "Named User", 1)
    catalog.assign_named(engine, CM, "alice")
    with pytest.raises(InvalidInput, match="named seats"):
        catalog.assign_named(engine, CM, "bob")
    assert _count(engine, assignments_t) == 1


def test_assign_named_needs_a_named_pool_of_a_known_product(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 5)
    with pytest.raises(UnknownProduct, match="Nope"):
        catalog.assign_named(engine, "Nope", "alice")
    with pytest.raises(UnknownLicenseType):
        catalog.assign_named(engine, CM, "alice")  # CM has no Named User pool
    with pytest.raises(InvalidInput, match="not a named-user pool"):
        catalog.assign_named(engine, CM, "alice", license_type="Concurrent User")
    assert _count(engine, assignments_t) == 0


def test_list_pools_columns_and_counts(engine):
    catalog.add_pool(engine, CM, "Named User", 3)
    catalog.add_pool(engine, CM, "Concurrent User", 10, idle_limit=3600)
    catalog.assign_named(engine, CM, "alice")
    catalog.assign_named(engine, CM, "bob")
    frame = catalog.list_pools(engine)
    assert list(frame.columns) == [
        "product",
        "license_type",
        "kind",
        "seats",
        "assigned",
        "expires_at",
        "idle_limit",
        "counting",
    ]
    rows = frame.set_index("license_type")
    assert rows.loc["Named User", "assigned"] == 2
    assert pd.isna(rows.loc["Concurrent User", "assigned"])
    assert rows.loc["Concurrent User", "idle_limit"] == pd.Timedelta(hours=1)
    assert pd.isna(rows.loc["Named User", "idle_limit"])
    assert str(frame["seats"].dtype) == "Int64"  # missing where a server's seats are unknown
    assert set(frame["counting"]) == {"per_user"}


def test_list_pools_of_an_empty_store(engine):
    frame = catalog.list_pools(engine)
    assert frame.empty
    assert "product" in frame.columns


def test_license_filter_parsing_names_the_known_choices(engine):
    catalog.add_pool(engine, CM, "Concurrent User", 1)
    cat = catalog.read_catalog(engine)
    with pytest.raises(UnknownProduct, match="Case Management"):
        catalog.parse_license_filter(cat, {"Nope": ["Concurrent User"]})
    with pytest.raises(UnknownLicenseType, match="Concurrent User"):
        catalog.parse_license_filter(cat, {CM: ["Named User"]})
    assert catalog.parse_license_filter(cat, {CM: []}) == {}
    assert catalog.parse_license_filter(cat, {CM: "Concurrent User"}) == {
        cat.products[CM]: [cat.license_types["Concurrent User"]]
    }
