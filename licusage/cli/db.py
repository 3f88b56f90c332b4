"""``licusage db``: schema management of the store (upgrade, current revision)."""

from __future__ import annotations

import click

from .. import db as store
from .. import migrations
from ._common import db_option, fail, store_url


@click.group("db")
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@db_option
def upgrade(db_url: str | None) -> None:
    """Bring the store to this version's schema; does nothing when it is current.

    Example: licusage db upgrade --db postgresql://licusage@db.example.org/licusage
    """
    before, after = store.upgrade(store_url(db_url))
    if before == after:
        click.echo(f"store already at revision {after}: nothing to do")
    else:
        click.echo(f"store upgraded from revision {before or '(empty)'} to {after}")


@db.command("current")
@db_option
def current(db_url: str | None) -> None:
    """Show the store's schema revision and this version's.

    Example: licusage db current --db sqlite:///licusage.sqlite
    """
    try:
        engine = store.create_engine(store_url(db_url))
    except Exception as error:  # an unparsable URL, an unknown driver
        fail(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    try:
        state, revision, head = store.store_operation(migrations.current)(engine)
    finally:
        engine.dispose()
    click.echo(f"store revision: {revision or '(none)'} ({state}); this licusage: {head}")
