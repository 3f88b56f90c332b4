"""Loading generated rows into an empty store, fast, in one transaction.

On SQLite with ``executemany`` of tuples, on PostgreSQL with ``COPY``; the tables' secondary
indexes (and on PostgreSQL the holds' and denials' foreign keys) are dropped before loading and
rebuilt afterwards (safe: the store holds no sessions yet, and it all happens in the one
transaction). The hourly roll-up is invalidated in the same transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex

from .. import rollup
from ..db import is_sqlite
from ..errors import InvalidInput
from ..migrations import trigram
from ..models import denials_t, holds_t, sessions_t

CHUNK = 100_000  # rows per executemany / COPY write
NOT_EMPTY = "the store already holds sessions; a large store needs an empty one"

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Column lists of one table, ready for executemany or COPY."""

    table: sa.Table
    columns: list[str]
    values: list[list[Any]]

    @classmethod
    def of(cls, table: sa.Table, **columns: list[Any]) -> Rows:
        """The rows of `table` given column by column (names of the table's columns)."""
        unknown = set(columns) - set(table.columns.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
        return cls(table, list(columns), list(columns.values()))

    def column(self, name: str) -> list[Any]:
        """The values of column `name`."""
        return self.values[self.columns.index(name)]

    def __len__(self) -> int:
        return len(self.values[0]) if self.values else 0


def refuse_sessions(count: int) -> None:
    """InvalidInput if the store holds sessions (`count` of them): a large store needs none."""
    if count:
        raise InvalidInput(NOT_EMPTY)


@contextmanager
def _timed(what: str) -> Iterator[None]:
    """Log how long a step took (logger ``licusage.bulk.load``, level DEBUG)."""
    began = time.perf_counter()
    yield
    log.debug("%s: %.2f s", what, time.perf_counter() - began)


@contextmanager
def _driver_connection(engine: Engine) -> Iterator[Any]:
    """The DB-API connection of one of the engine's pooled connections (returned after)."""
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        yield dbapi
    finally:
        raw.close()


def _chunks(rows: Rows) -> Iterator[list[tuple[Any, ...]]]:
    for begin in range(0, len(rows), CHUNK):
        yield list(zip(*(column[begin : begin + CHUNK] for column in rows.values), strict=True))


def _index_ddl(engine: Engine, tables: Iterable[sa.Table]) -> tuple[list[str], list[str]]:
    """DROP and CREATE statements of the tables' secondary indexes (as the models declare them)."""
    drops, creates = [], []
    for table in tables:
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            drops.append(f"DROP INDEX IF EXISTS {index.name}")
            creates.append(str(CreateIndex(index).compile(dialect=engine.dialect)))
    return drops, creates


def load_sqlite(engine: Engine, tables: list[Rows], step: Callable[[int], object]) -> None:
    """Write `tables` into an empty SQLite store in one transaction (``executemany``), calling
    `step` with each chunk's row count. InvalidInput if the store holds sessions."""
    drops, creates = _index_ddl(engine, [sessions_t, holds_t, denials_t])
    with _driver_connection(engine) as dbapi:
        cursor = dbapi.cursor()
        # bulk-load settings for this connection only; restored below
        cursor.execute("PRAGMA foreign_keys = OFF")  # rows are consistent by construction
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA cache_size = -262144")  # 256 MiB
        cursor.execute("PRAGMA temp_store = MEMORY")
        # a rollback journal keeps only the few pages of the empty tables, where WAL would
        # write the whole load twice; it needs the only connection, else WAL stays
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if journal == "wal":
            with suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = DELETE")
        cursor.execute("BEGIN IMMEDIATE")
        try:
            refuse_sessions(cursor.execute("SELECT count(*) FROM sessions").fetchone()[0])
            for statement in (*rollup.INVALIDATE_SQL, *drops):
                cursor.execute(statement)
            for rows in tables:
                marks = ", ".join("?" * len(rows.columns))
                insert = (
                    f"INSERT INTO {rows.table.name} ({', '.join(rows.columns)}) VALUES ({marks})"
                )
                for chunk in _chunks(rows):
                    cursor.executemany(insert, chunk)
                    step(len(chunk))
            for statement in creates:
                cursor.execute(statement)
            cursor.execute("ANALYZE")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA cache_size = -2000")
            cursor.execute("PRAGMA temp_store = DEFAULT")
            if journal == "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()


def _copy_column(values: list[Any]) -> list[str]:
    """A column in COPY's text form (None as ``\\N``); our values need no escaping."""
    if values and all(isinstance(v, str) for v in values):
        return values
    return ["\\N" if v is None else str(v) for v in values]


def load_postgres(engine: Engine, tables: list[Rows], step: Callable[[int], object]) -> None:
    """Write `tables` into an empty PostgreSQL store in one transaction (``COPY``), then
    VACUUM the big tables; `step` gets each chunk's row count. InvalidInput if the store
    holds sessions."""
    drops, creates = _index_ddl(engine, [sessions_t, holds_t, denials_t])
    with _driver_connection(engine) as dbapi:
        try:
            with dbapi.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                # one long load: no statement or lock time-out (licusage.db.Timeouts) inside it
                cursor.execute("SET LOCAL statement_timeout = 0")
                cursor.execute("SET LOCAL lock_timeout = 0")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                cursor.execute("LOCK TABLE sessions, session_licenses, denials IN EXCLUSIVE MODE")
                cursor.execute("SELECT count(*) FROM sessions")
                row = cursor.fetchone()
                refuse_sessions(row[0] if row is not None else 0)
                # foreign keys are checked row by row during COPY: check them once at the end
                cursor.execute(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                    " FROM pg_constraint WHERE contype = 'f'"
                    " AND conrelid IN ('session_licenses'::regclass, 'denials'::regclass)"
                )
                foreign_keys = cursor.fetchall()
                for table, name, _ in foreign_keys:
                    cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                # the trigram index (not in the models; migration 0002): rebuilt if it was there
                cursor.execute("SELECT pg_get_indexdef(to_regclass(%s))", (trigram.INDEX_NAME,))
                row = cursor.fetchone()
                if row is not None and row[0]:
                    drops.append(trigram.DROP_INDEX)
                    creates.append(row[0])
                for statement in (*rollup.INVALIDATE_SQL, *drops):
                    cursor.execute(statement)
                for rows in tables:
                    with _timed(f"COPY {rows.table.name}"):
                        _copy(cursor, rows, step)
                for statement in creates:
                    with _timed(statement):
                        cursor.execute(statement)
                for table, name, definition in foreign_keys:
                    with _timed(f"foreign key {name}"):
                        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                for table in ("sessions", "denials"):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce(max(id), 0) + 1, false) FROM {table}"
                    )
                with _timed("ANALYZE"):
                    cursor.execute("ANALYZE")
            with _timed("COMMIT"):
                dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise
        # set the visibility map, so index-only scans need not visit the heap
        dbapi.autocommit = True
        try:
            with dbapi.cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                row = cursor.fetchone()
                cursor.execute("SET statement_timeout = 0")  # VACUUM of a large table
                for table in ("sessions", "session_licenses", "denials"):
                    with _timed(f"VACUUM {table}"):
                        cursor.execute(f"VACUUM {table}")
                if row is not None:  # the connection's own limit again (licusage.db.Timeouts)
                    cursor.execute("SELECT set_config('statement_timeout', %s, false)", (row[0],))
        finally:
            dbapi.autocommit = False


def _copy(cursor: Any, rows: Rows, step: Callable[[int], object]) -> None:
    """COPY `rows` into their table, in text form, a chunk at a time."""
    copy_sql = f"COPY {rows.table.name} ({', '.join(rows.columns)}) FROM STDIN"
    text = [_copy_column(column) for column in rows.values]
    with cursor.copy(copy_sql) as copy:
        for begin in range(0, len(rows), CHUNK):
            lines = zip(*(column[begin : begin + CHUNK] for column in text), strict=True)
            copy.write("".join("\t".join(line) + "\n" for line in lines))
            step(min(CHUNK, len(rows) - begin))


def load(engine: Engine, tables: list[Rows], step: Callable[[int], object]) -> None:
    """Write `tables` into the empty store of `engine` (:func:`load_sqlite` or
    :func:`load_postgres`), calling `step` with each chunk's row count."""
    (load_sqlite if is_sqlite(engine) else load_postgres)(engine, tables, step)
