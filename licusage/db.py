"""Opening the store: engine set-up, schema creation, and write transactions."""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import platformdirs
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from .errors import SchemaMismatch, StoreUnavailable

ENV_URL = "LICUSAGE_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_MS = 30_000

# PostgreSQL time-outs, in seconds (0 turns one off); the environment overrides the defaults
ENV_CONNECT_TIMEOUT = "LICUSAGE_PG_CONNECT_TIMEOUT"
ENV_STATEMENT_TIMEOUT = "LICUSAGE_PG_STATEMENT_TIMEOUT"
ENV_LOCK_TIMEOUT = "LICUSAGE_PG_LOCK_TIMEOUT"


@dataclass(frozen=True)
class Timeouts:
    """How long a PostgreSQL store may keep a caller waiting, in seconds (0: no limit).

    * `connect`: to open a connection (a frozen or unreachable server);
    * `statement`: for one statement (a frozen backend, a runaway query);
    * `lock`: to wait for a row or table lock another transaction holds.

    Past any of them the operation fails with :class:`StoreUnavailable` and its transaction is
    rolled back: nothing is changed. Schema upgrades run without the statement time-out.
    """

    connect: float = 10.0
    statement: float = 30.0
    lock: float = 10.0

    @classmethod
    def from_env(cls) -> Timeouts:
        """The defaults, overridden by ``LICUSAGE_PG_CONNECT_TIMEOUT``,
        ``LICUSAGE_PG_STATEMENT_TIMEOUT`` and ``LICUSAGE_PG_LOCK_TIMEOUT``."""
        values = {}
        for name, variable in (
            ("connect", ENV_CONNECT_TIMEOUT),
            ("statement", ENV_STATEMENT_TIMEOUT),
            ("lock", ENV_LOCK_TIMEOUT),
        ):
            text = os.environ.get(variable, "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise StoreUnavailable(
                    f"{variable} must be a number of seconds, not {text!r}"
                ) from None
            if not 0 <= value <= 86_400 or value != value:
                raise StoreUnavailable(
                    f"{variable} must be between 0 and 86400 seconds, not {text}"
                )
            values[name] = value
        return cls(**values)


P = ParamSpec("P")
R = TypeVar("R")


def default_sqlite_path() -> Path:
    """The embedded store's file: ``licusage.sqlite`` in the user's data directory."""
    return Path(platformdirs.user_data_dir("licusage", appauthor=False)) / "licusage.sqlite"


def resolve_url(url: str | None = None) -> str:
    """`url`, else ``$LICUSAGE_DATABASE_URL``, else the embedded SQLite file."""
    if url:
        return url
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    path = default_sqlite_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def describe_url(url: str | None = None) -> str:
    """Where the store at `url` (see :func:`resolve_url`) is, for people: a SQLite file's path,
    else the URL without its password."""
    parsed = sa.make_url(resolve_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"SQLite file {Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The file of a SQLite store at `url`, or None (another database, or in memory)."""
    parsed = sa.make_url(url) if isinstance(url, str) else url
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None  # SQLite URI filenames: left to SQLite
    return Path(database)


def _create_private_file(path: Path) -> None:
    """Create a new SQLite store's file readable by its owner only (``0600``): it holds the
    sign-in accounts' password hashes. SQLite gives its ``-wal``/``-shm`` files the same mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # e.g. a missing folder: SQLite reports it when connecting
    os.close(fd)


def _normalise_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    # plain postgresql:// means psycopg 3 here, not the psycopg2 SQLAlchemy defaults to
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" event below emit BEGIN itself, so writes can ask for IMMEDIATE
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a write takes the database lock up front: no deadlock between two readers upgrading
        immediate = conn.get_execution_options().get("licusage_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _configure_postgresql(engine: Engine, timeouts: Timeouts) -> None:
    statement_ms, lock_ms = int(timeouts.statement * 1000), int(timeouts.lock * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # session defaults of every new connection (SET, not the URL's options, which the
        # URL may already use for search_path); plain integers, never caller text
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {statement_ms:d}")
            cursor.execute(f"SET lock_timeout = {lock_ms:d}")
        dbapi_conn.commit()


def create_engine(
    url: str | None = None, *, timeouts: Timeouts | None = None, **kwargs: Any
) -> Engine:
    """An Engine for the store at `url` (see :func:`resolve_url`), without touching the schema.

    On PostgreSQL, `timeouts` (default: :meth:`Timeouts.from_env`) bound connecting, each
    statement and each lock wait. Raises :class:`StoreUnavailable` when the URL names a
    database whose Python driver is not installed (``mysql://``, ``mssql://``, ...): licusage
    supports SQLite and PostgreSQL.
    """
    parsed = _normalise_url(resolve_url(url))
    try:
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_file(parsed)
            if path is not None:
                _create_private_file(path)
            engine = sa.create_engine(parsed, **kwargs)
            _configure_sqlite(engine)
        else:
            timeouts = timeouts or Timeouts.from_env()
            kwargs.setdefault("pool_pre_ping", True)
            connect_args = dict(kwargs.pop("connect_args", {}))
            if "connect_timeout" not in parsed.query and timeouts.connect:
                # libpq takes whole seconds (at least 2 are honoured)
                connect_args.setdefault("connect_timeout", max(2, math.ceil(timeouts.connect)))
            engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
            _configure_postgresql(engine, timeouts)
    except ImportError as error:
        raise StoreUnavailable(
            f"cannot open a {parsed.drivername}:// store: its driver (the Python module "
            f"{error.name or error}) is not installed; licusage supports SQLite (sqlite:///PATH) "
            "and PostgreSQL (postgresql://...)"
        ) from None
    return engine


def connect(
    url: str | None = None, *, create: bool = True, timeouts: Timeouts | None = None
) -> Engine:
    """Open the store at `url` (or ``$LICUSAGE_DATABASE_URL``, or the embedded SQLite file).

    Creates the schema of a new store (with `create`). Raises :class:`StoreUnavailable` when the
    database cannot be reached (within `timeouts` on PostgreSQL, see :class:`Timeouts`), and :class:`SchemaMismatch` when the store's schema is newer than
    this code or older (then ``licusage db upgrade`` brings it up to date).
    """
    try:
        engine = create_engine(url, timeouts=timeouts)
    except (exc.ArgumentError, exc.NoSuchModuleError) as error:
        raise StoreUnavailable(f"invalid database URL: {error}") from None
    from . import migrations

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        migrations.ensure_current(engine, create=create)
    except exc.DBAPIError as error:
        engine.dispose()
        raise StoreUnavailable(describe_db_error(error, engine)) from None
    except SchemaMismatch:
        engine.dispose()
        raise
    return engine


def upgrade(url: str | None = None) -> tuple[str | None, str]:
    """Bring the store at `url` to this code's schema; (revision before, revision after).

    A no-op on a current store. Raises :class:`SchemaMismatch` for a store newer than this code.
    """
    from . import migrations

    try:
        engine = create_engine(url)
    except (exc.ArgumentError, exc.NoSuchModuleError) as error:
        raise StoreUnavailable(f"invalid database URL: {error}") from None
    try:
        return migrations.upgrade(engine)
    except exc.DBAPIError as error:
        raise StoreUnavailable(describe_db_error(error, engine)) from None
    finally:
        engine.dispose()


def describe_db_error(error: exc.DBAPIError, engine: Engine | None = None) -> str:
    """One readable line for a driver error (no SQL, no traceback)."""
    where = engine.url.render_as_string(hide_password=True) if engine is not None else "database"
    first_line = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    return f"cannot use the store at {where}: {first_line}"


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on success and rolled back on error.

    On SQLite the transaction takes the write lock at BEGIN, so checks made inside it (free seats,
    already-ended sessions) still hold when it writes.
    """
    with (
        _sqlite_writer_lock(engine),
        engine.connect().execution_options(licusage_write=True) as conn,
        conn.begin(),
    ):
        yield conn


def insert_rows(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (each the values of `columns`) into `table`, inside the caller's
    transaction: the bulk writes of an import.

    Each value is converted as the column's type converts it (a time, on SQLite) and the rows
    go in at once (PostgreSQL: ``COPY``; SQLite: one executemany), without the per-row work of
    ``conn.execute(insert, dicts)``; what is stored is the same.
    """
    if not rows:
        return
    rows = _bound(conn, table, columns, rows)
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    if conn.dialect.name == "postgresql":
        sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
        dbapi = conn.dialect.loaded_dbapi
        psycopg_connection = conn.connection.driver_connection  # psycopg's, for its COPY
        assert psycopg_connection is not None  # a connection in use always has one
        try:
            with psycopg_connection.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi.Error as error:  # as SQLAlchemy raises the driver's errors
            raise exc.DBAPIError.instance(sql, None, error, dbapi.Error) from error
        return
    marks = ", ".join([_placeholder(conn)] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", rows)


def update_rows(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    key: str = "id",
) -> None:
    """Set `columns` of the rows of `table` whose `key` is each row's last value (each of
    `rows`: the new values of `columns`, then the key), in one executemany (see
    :func:`insert_rows`)."""
    if not rows:
        return
    quote, mark = conn.dialect.identifier_preparer.quote, _placeholder(conn)
    assignments = ", ".join(f"{quote(name)} = {mark}" for name in columns)
    sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = {mark}"
    conn.exec_driver_sql(sql, _bound(conn, table, [*columns, key], rows))


def _placeholder(conn: Connection) -> str:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(f"bulk writes with the {style} parameter style")


def _bound(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """`rows` with each value of `columns` converted as its column's type binds it."""
    dialect = conn.dialect
    convert = []
    for position, name in enumerate(columns):
        kind = table.c[name].type
        if processor := kind.dialect_impl(dialect).bind_processor(dialect):
            convert.append((position, processor, repr(kind)))
    if not convert:
        return [tuple(row) for row in rows]
    # a value is often in several rows (a session's start is its first checkout's): converted
    # once per type
    converted: dict[str, dict[Any, Any]] = {}
    values = [list(row) for row in rows]
    for position, processor, kind_name in convert:
        done = converted.setdefault(kind_name, {})
        for row in values:
            value = row[position]
            if value is not None:
                try:
                    row[position] = done[value]
                except KeyError:
                    row[position] = done[value] = processor(value)
    return [tuple(row) for row in values]


_WRITER_LOCKS: dict[str, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _sqlite_writer_lock(engine: Engine) -> AbstractContextManager[object]:
    """One lock per SQLite file and process, taken before ``BEGIN IMMEDIATE``.

    Writers of one process (server threads, concurrent logins) then queue on a Python lock
    instead of SQLite's busy handler, which polls with sleeps of up to 100 ms: under contention
    that is both slow and unfair (a writer could wait past the busy timeout and get
    "database is locked"). Other processes still wait through the busy timeout.
    """
    database = engine.url.database
    if not is_sqlite(engine) or database in (None, "", ":memory:"):
        return nullcontext()
    key = os.path.realpath(database)
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.RLock())


def _forget_writer_locks() -> None:
    """In a forked child (``--num-procs``): locks held by the parent's threads are not ours."""
    global _WRITER_LOCKS_GUARD
    _WRITER_LOCKS_GUARD = threading.Lock()
    _WRITER_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_writer_locks)


def store_operation(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a lost or unreachable database into :class:`StoreUnavailable`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (exc.OperationalError, exc.InterfaceError) as error:
            raise StoreUnavailable(describe_db_error(error)) from error

    return wrapper
