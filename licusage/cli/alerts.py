"""``licusage alerts check|list``: evaluate the alert rules (for cron) and show firings."""

from __future__ import annotations

from pathlib import Path

import click

from .. import alerts as alerts_
from ._common import db_option, opened_store, render_table


@click.group()
def alerts() -> None:
    """Alert rules (a TOML file, see docs/alerts.md): evaluate them, list what fired.

    \b
    Example:
      licusage alerts check --rules /etc/licusage/alerts.toml
      licusage alerts list --open
    """


@alerts.command("check")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The TOML file of rules and channels.",
)
@click.option("--no-deliver", is_flag=True, help="Record firings without sending them.")
@db_option
def check(rules_path: Path, no_deliver: bool, db_url: str | None) -> None:
    """Evaluate the rules once: new firings are stored and delivered, cleared ones closed.

    Exit code 0 either way (1 is not used for "alerts are firing": see 'alerts list --open').

    \b
    Example (cron, every minute):
      * * * * * licusage alerts check --rules /etc/licusage/alerts.toml
    """
    config = alerts_.load_config(rules_path)
    with opened_store(db_url) as engine:
        result = alerts_.evaluate(engine, config, deliver=not no_deliver)
    for firing in result.fired:
        sent = ", ".join(f"{k} {v}" for k, v in sorted(firing.delivery.items())) or "not delivered"
        click.echo(f"FIRED   {firing.rule}: {firing.subject}: {firing.message} ({sent})")
    for firing in result.cleared:
        click.echo(f"CLEARED {firing.rule}: {firing.subject}")
    if not result.fired and not result.cleared:
        click.echo("No change.")


@alerts.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only firings that have not cleared.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@db_option
def list_(open_only: bool, limit: int, db_url: str | None) -> None:
    """List stored firings, newest first.

    \b
    Example:
      licusage alerts list --open
    """
    with opened_store(db_url) as engine:
        frame = alerts_.firings(engine, limit=limit, open_only=open_only)
    if frame.empty:
        click.echo("No alerts have fired.")
        return
    rows = [
        [
            r["fired_at"].strftime("%Y-%m-%d %H:%M UTC"),
            "open"
            if str(r["cleared_at"]) == "NaT"
            else r["cleared_at"].strftime("cleared %Y-%m-%d %H:%M"),
            str(r["rule"]),
            str(r["subject"]),
            str(r["message"]),
        ]
        for r in frame.to_dict("records")
    ]
    click.echo(render_table(["Fired", "State", "Rule", "Subject", "Message"], rows))
