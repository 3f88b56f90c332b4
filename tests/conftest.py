"""Shared fixtures: a fresh store per test on SQLite, and on PostgreSQL when it is reachable.

With ``LICUSAGE_STRICT=1`` (CI) a test that needs PostgreSQL or the browser fails instead of
skipping when its part is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from licusage import clock, db
from tests.helpers import STRICT, fresh_pg_database, fresh_pg_schema, pg_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STRICT:
        return
    if not pg_available():
        skip = pytest.mark.skip(reason="PostgreSQL not reachable (set LICUSAGE_TEST_PG_URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, uniquely named PostgreSQL database, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_run_database() -> Iterator[str]:
    """One new PostgreSQL database for this test run (per xdist worker), dropped at the end."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty store, once on SQLite and once on PostgreSQL (a fresh schema in the
    run's database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        with fresh_pg_schema(request.getfixturevalue("pg_run_database")) as url:
            yield url


@pytest.fixture
def engine(store_url) -> Iterator[Engine]:
    engine = db.connect(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url) -> Iterator[Engine]:
    engine = db.connect(sqlite_url)
    yield engine
    engine.dispose()


class FrozenClock:
    """A clock tests move by hand: ``frozen.now``, ``frozen.advance(minutes=5)``."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = clock.to_utc(when)


@pytest.fixture
def frozen(monkeypatch) -> FrozenClock:
    """Replace :func:`licusage.clock.now` with a clock fixed at 2026-03-02 10:00 UTC (a Monday)."""
    fake = FrozenClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture(autouse=True)
def _no_ambient_database_url(monkeypatch) -> None:
    # a developer's own LICUSAGE_DATABASE_URL must never be what a test writes to
    monkeypatch.delenv("LICUSAGE_DATABASE_URL", raising=False)
    os.environ.setdefault("LICUSAGE_TEST", "1")
