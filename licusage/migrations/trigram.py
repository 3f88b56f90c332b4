"""The PostgreSQL trigram index behind the user filter (``user_key LIKE '%x%'``).

It needs the ``pg_trgm`` extension, which the store's role may not be allowed to create (it is
"trusted" since PostgreSQL 13, so a database owner usually can). Without it the index is skipped
with a warning: the filter still works, it only scans the active sessions' entries instead.

The index is not declared in :mod:`licusage.models` (``create_all`` would then fail wherever the
extension is missing, and SQLite has no such index); migration 0002, :func:`ensure_current` for a
new store and the bulk loader create it through this module.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

INDEX_NAME = "ix_sessions_active_user_key_trgm"
CREATE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
DROP_INDEX = f"DROP INDEX IF EXISTS {INDEX_NAME}"


def _create_index_sql(extension_schema: str) -> str:
    # the operator class is qualified: the extension may live in a schema outside search_path
    opclass = f'"{extension_schema}".gin_trgm_ops'
    return (
        f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON sessions "
        f"USING gin (user_key {opclass}) WHERE ended_at IS NULL"
    )


def create_index(conn: Connection) -> bool:
    """Create the trigram index (PostgreSQL only) inside the caller's transaction.

    Returns whether the index exists afterwards. A refused ``CREATE EXTENSION`` is rolled back
    to a savepoint and logged, never raised: the schema is usable without the index.
    """
    if conn.dialect.name != "postgresql":
        return False
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(CREATE_EXTENSION)
    except sa.exc.DBAPIError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        log.warning(
            "licusage: could not create the PostgreSQL extension pg_trgm (%s); skipping the "
            "index %s: the user filter works but checks every active session. Ask a superuser "
            "to run `CREATE EXTENSION pg_trgm` in this database, then `licusage db upgrade`",
            reason,
            INDEX_NAME,
        )
        return False
    schema = conn.execute(
        sa.text(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
        )
    ).scalar_one()
    conn.exec_driver_sql(_create_index_sql(schema.strip('"')))
    return True


def exists(conn: Connection) -> bool:
    """Whether the store on `conn` has the index (always False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": INDEX_NAME})
    return bool(found.scalar_one())
