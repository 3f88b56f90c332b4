"""``licusage rollup``: the hourly roll-up the usage analytics read (see docs/performance.md)."""

from __future__ import annotations

import click

from ..analytics import rollup as analytics_rollup
from ._common import db_option, opened_store, plural, progress_option, show_progress


@click.group("rollup")
def rollup() -> None:
    """Manage the hourly roll-up of seats in use per pool."""


@rollup.command("rebuild")
@db_option
@progress_option
def rebuild(db_url: str | None, progress: bool | None) -> None:
    """Recompute the roll-up of every pool from the holds and denials.

    Never needed for correctness (writes mark what they change, reads recompute it first):
    run it after a restore or an upgrade, so the first read is fast.

    Example: licusage rollup rebuild --db sqlite:///licusage.sqlite
    """
    with opened_store(db_url) as engine:
        done = analytics_rollup.refresh(engine, rebuild=True, progress=show_progress(progress))
    click.echo(
        f"rolled up {plural(done.pools, 'pool')}: {plural(done.hours, 'hour')},"
        f" {plural(done.rows, 'row')} with use or denials"
    )
