"""Helpers for tests: PostgreSQL databases made and dropped per test, waiting without sleeps."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from licusage import db
from licusage.errors import StoreUnavailable

STRICT = os.environ.get("LICUSAGE_STRICT") == "1"
PG_SERVER_URL = os.environ.get(
    "LICUSAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

T = TypeVar("T")

# PostgreSQL's words when every connection slot is taken (by this run or anyone else's)
SERVER_FULL = ("too many clients already", "remaining connection slots are reserved")


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


def connect_waiting(url: str, *, create: bool = True, timeout: float = 600.0) -> Engine:
    """:func:`licusage.db.connect`, waiting while a PostgreSQL server has no free connection.

    A test that needs many connections at once (the contention tests hold 66) waits for the
    server to have room (other tests, or other runs on a shared server, end and give theirs
    back) instead of failing with "too many clients". The engine keeps its connection in its
    pool, so once all are made they stay made.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return db.connect(url, create=create)
        except StoreUnavailable as error:
            if not any(words in str(error) for words in SERVER_FULL):
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"no free PostgreSQL connection within {timeout} s") from None
            time.sleep(0.5)


def realdata_dir() -> Path:
    """``../shared/realdata`` beside the repository (``$LICUSAGE_REALDATA`` overrides it)."""
    override = os.environ.get("LICUSAGE_REALDATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "realdata"


def realdata(name: str) -> Path:
    """The real, anonymised file `name` of ``../shared/realdata`` (never copied into the repo);
    skips the test when it is absent, or fails it under LICUSAGE_STRICT=1."""
    path = realdata_dir() / name
    require(path.is_file(), f"the real-data file {path} is not there (../shared/realdata)")
    return path
