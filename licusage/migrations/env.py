"""Alembic environment of licusage: runs on the connection :mod:`licusage.migrations` hands it.

There is no alembic.ini: the configuration is built in code (see ``licusage.migrations.config``)
and the caller owns the connection and its transaction.
"""

from __future__ import annotations

from alembic import context

from licusage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run licusage migrations through `licusage db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
