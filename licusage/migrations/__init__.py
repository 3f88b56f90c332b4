"""Schema management with Alembic, shipped inside the package and configured in code.

A store is in one of these states (:func:`status`):

* ``new``: no licusage table yet. :func:`ensure_current` creates the schema from the models and
  stamps it at the head revision (fast: tests create many stores).
* ``unversioned``: made by licusage before migrations existed (every table of revision 0001 but
  no ``alembic_version``). It *is* revision 0001, so it is stamped so, without changing a table.
* ``current``: at the head revision of this code.
* ``older``: at an earlier revision. :func:`ensure_current` refuses it and asks for
  ``licusage db upgrade``: several servers (possibly running different releases) share one store,
  so changing its schema is an operator's explicit step, never a side effect of opening it.
* ``newer``: at a revision this code does not know (a later release migrated it). Refused.

All of it runs in one transaction that, on PostgreSQL, holds an advisory lock, so servers that
start at the same moment on a new store create it once; on SQLite ``BEGIN IMMEDIATE`` does that.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from ..errors import SchemaMismatch
from ..models import Base
from . import trigram

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
INITIAL_REVISION = "0001"
# the tables revision 0001 creates: a store holding all of them but no version table is at 0001
INITIAL_TABLES = frozenset(
    {
        "accounts",
        "audit_events",
        "denials",
        "license_pools",
        "license_types",
        "named_assignments",
        "products",
        "session_licenses",
        "sessions",
    }
)
# any constant: the key of the PostgreSQL advisory lock that serialises schema changes
_PG_LOCK_KEY = 0x11C05A6E

NEW, UNVERSIONED, CURRENT, OLDER, NEWER = "new", "unversioned", "current", "older", "newer"


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the packaged scripts (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script_directory() -> ScriptDirectory:
    """The packaged migration scripts (parsed once per process)."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The revision this code's models correspond to."""
    revision = script_directory().get_current_head()
    assert revision is not None
    return revision


def known_revisions() -> set[str]:
    return {script.revision for script in script_directory().walk_revisions()}


def store_revision(conn: Connection) -> str | None:
    """The store's revision, or None when it has no version table (or an empty one)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return MigrationContext.configure(conn).get_current_revision()


def status(conn: Connection) -> tuple[str, str | None]:
    """(state, revision) of the store on `conn`; the states are described in this module."""
    revision = store_revision(conn)
    if revision is None:
        tables = set(sa.inspect(conn).get_table_names())
        if not tables & INITIAL_TABLES:
            return NEW, None
        if tables >= INITIAL_TABLES:
            return UNVERSIONED, None
        missing = ", ".join(sorted(INITIAL_TABLES - tables))
        raise SchemaMismatch(
            f"the database holds some licusage tables but not all (missing: {missing}) and no "
            "schema revision: it is not a licusage store this code can use"
        )
    if revision == head():
        return CURRENT, revision
    if revision in known_revisions():
        return OLDER, revision
    return NEWER, revision


def _newer_message(revision: str | None) -> str:
    return (
        f"the store's schema (revision {revision}) is newer than this licusage "
        f"(revision {head()}): upgrade licusage, or use a store made by this version"
    )


@contextmanager
def _schema_transaction(engine: Engine, *, rebuild: bool = False) -> Iterator[Connection]:
    """A write transaction that holds the schema lock (advisory lock on PostgreSQL).

    With `rebuild` on SQLite, foreign keys are off for the transaction: a migration that
    changes a column SQLite cannot alter rebuilds the table (copy, drop, rename), and dropping a
    table that others refer to must not fail. Every reference is checked before the commit.
    """
    with engine.connect().execution_options(licusage_write=True) as conn:
        sqlite_rebuild = rebuild and conn.dialect.name == "sqlite"
        if sqlite_rebuild:  # outside any transaction, where SQLite honours the pragma
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # a schema change may wait for running transactions and rewrite big
                    # tables: no statement or lock time-out inside it (licusage.db.Timeouts)
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                    conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                yield conn
                if sqlite_rebuild:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise SchemaMismatch(
                            f"the upgrade would leave {len(broken)} broken references "
                            f"(first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if sqlite_rebuild:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def _stamp(conn: Connection, revision: str) -> None:
    MigrationContext.configure(conn).stamp(script_directory(), revision)


def check(conn: Connection) -> str:
    """Raise :class:`SchemaMismatch` unless the store on `conn` is current (or new); its state."""
    state, revision = status(conn)
    if state == NEWER:
        raise SchemaMismatch(_newer_message(revision))
    if state == OLDER:
        raise SchemaMismatch(
            f"the store's schema is at revision {revision}, this licusage needs {head()}: "
            "run `licusage db upgrade` (back up the store first)"
        )
    return state


def ensure_current(engine: Engine, *, create: bool = True) -> None:
    """Make a new store's schema (with `create`) or check an existing one is usable.

    Raises :class:`SchemaMismatch` for a store that is newer than this code or needs
    ``licusage db upgrade``.
    """
    with engine.connect() as conn:
        state, _ = status(conn)
    if state == CURRENT:
        return
    if state == NEW and not create:
        return
    with _schema_transaction(engine) as conn:
        state = check(conn)  # again, under the lock: another process may have been first
        if state == NEW:
            Base.metadata.create_all(conn)
            trigram.create_index(conn)  # not in the models: see licusage.migrations.trigram
            _stamp(conn, head())
        elif state == UNVERSIONED:
            _stamp(conn, INITIAL_REVISION)
            check(conn)


def upgrade(engine: Engine, revision: str = "heads") -> tuple[str | None, str]:
    """Bring the store to `revision` (default: this code's head) with the packaged migrations.

    A new store is built by running every migration; a current one is left untouched.
    Returns (revision before, revision after). Refuses a store newer than this code.
    """
    with _schema_transaction(engine, rebuild=True) as conn:
        state, before = status(conn)
        if state == NEWER:
            raise SchemaMismatch(_newer_message(before))
        if state == UNVERSIONED:
            _stamp(conn, INITIAL_REVISION)
            before = INITIAL_REVISION
        if state != CURRENT or revision not in ("head", "heads", head()):
            command.upgrade(config(conn), revision)
        elif not trigram.exists(conn):
            # skipped earlier (pg_trgm was refused): retry, e.g. once a superuser created it
            trigram.create_index(conn)
        after = store_revision(conn)
    assert after is not None
    return before, after


def current(engine: Engine) -> tuple[str, str | None, str]:
    """(state, store revision, head revision) of the store, without changing anything."""
    with engine.connect() as conn:
        state, revision = status(conn)
    return state, revision, head()
