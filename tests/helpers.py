"""Helpers for tests: PostgreSQL databases made and dropped per test, waiting without sleeps."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TypeVar

import pytest
import sqlalchemy as sa

STRICT = os.environ.get("LICUSAGE_STRICT") == "1"
PG_SERVER_URL = os.environ.get(
    "LICUSAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

T = TypeVar("T")


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, or fail it under LICUSAGE_STRICT=1."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"LICUSAGE_STRICT=1 and {reason}")
    pytest.skip(reason)


@cache
def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_pg_database(server_url: str = PG_SERVER_URL) -> Iterator[str]:
    """Create a uniquely named database on the server, yield its URL, drop it afterwards."""
    require(
        pg_available() or server_url != PG_SERVER_URL, f"PostgreSQL not reachable at {server_url}"
    )
    name = f"licusage_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def fresh_pg_schema(database_url: str) -> Iterator[str]:
    """Create a uniquely named schema in `database_url`, yield a URL whose connections use it
    (``search_path``), drop it afterwards. Much faster than a database per test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = sa.make_url(database_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
