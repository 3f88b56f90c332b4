"""``licusage db``: schema management of the store (upgrade, current revision)."""

from __future__ import annotations

import click

from . import db as store
from . import migrations
from .errors import LicusageError

DB_OPTION_HELP = "Database URL (default: $LICUSAGE_DATABASE_URL, else the embedded SQLite file)."


def _url(url: str | None) -> str | None:
    """This command's ``--db``, else one given before the command (``licusage --db URL db ...``)."""
    if url:
        return url
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().params.get("db_url") if ctx is not None else None


def _fail(error: Exception) -> None:
    """Exit 2 with one line on stderr."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(2)


@click.group("db")
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@click.option("--db", "url", metavar="URL", help=DB_OPTION_HELP)
def upgrade(url: str | None) -> None:
    """Bring the store to this version's schema; does nothing when it is current.

    Example: licusage db upgrade --db postgresql://licusage@db.example.org/licusage
    """
    try:
        before, after = store.upgrade(_url(url))
    except LicusageError as error:
        _fail(error)
        return
    if before == after:
        click.echo(f"store already at revision {after}: nothing to do")
    else:
        click.echo(f"store upgraded from revision {before or '(empty)'} to {after}")


@db.command("current")
@click.option("--db", "url", metavar="URL", help=DB_OPTION_HELP)
def current(url: str | None) -> None:
    """Show the store's schema revision and this version's.

    Example: licusage db current --db sqlite:///licusage.sqlite
    """
    try:
        engine = store.create_engine(_url(url))
    except Exception as error:  # an unparsable URL
        _fail(error)
        return
    try:
        state, revision, head = store.store_operation(migrations.current)(engine)
    except LicusageError as error:
        _fail(error)
        return
    finally:
        engine.dispose()
    click.echo(f"store revision: {revision or '(none)'} ({state}); this licusage: {head}")
