"""``licusage tokens add|list|revoke``: the API tokens of the HTTP API (``/api/v1/``)."""

from __future__ import annotations

import click

from .. import tokens as tokens_
from ._common import db_option, fail, opened_store, render_table


@click.group()
def tokens() -> None:
    """Manage the API tokens applications present to the HTTP API.

    \b
    Example:
      licusage tokens add case-app --scope sessions:write
      licusage tokens list
      licusage tokens revoke case-app
    """


@tokens.command("add")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(tokens_.SCOPES),
    required=True,
    help="sessions:write: check out, heartbeat, check in; read: sessions, pools, audit; "
    "admin: everything, including logout.",
)
@db_option
def add(name: str, scope: str, db_url: str | None) -> None:
    """Make a token and print it: the only time it is shown (the store keeps its SHA-256).

    \b
    Example:
      licusage tokens add case-app --scope sessions:write
    """
    with opened_store(db_url) as engine:
        token = tokens_.add_token(engine, name, scope)
    click.echo(f"Token {name.strip()} ({scope}); it is not shown again:", err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@db_option
def list_(include_revoked: bool, db_url: str | None) -> None:
    """List tokens: names, scopes and dates (never the tokens).

    \b
    Example:
      licusage tokens list --all
    """
    with opened_store(db_url) as engine:
        frame = tokens_.list_tokens(engine, include_revoked=include_revoked)
    if frame.empty:
        click.echo("No tokens (add one: licusage tokens add NAME --scope sessions:write).")
        return
    rows = [
        [
            str(r["name"]),
            str(r["scope"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M UTC"),
            ""
            if r["revoked_at"] is None or str(r["revoked_at"]) == "NaT"
            else r["revoked_at"].strftime("%Y-%m-%d %H:%M UTC"),
        ]
        for r in frame.to_dict("records")
    ]
    click.echo(render_table(["Name", "Scope", "Created", "Revoked"], rows))


@tokens.command("revoke")
@click.argument("name")
@db_option
def revoke(name: str, db_url: str | None) -> None:
    """Revoke a token: the API refuses it from the next request on (it stays listed).

    \b
    Example:
      licusage tokens revoke case-app
    """
    with opened_store(db_url) as engine:
        revoked = tokens_.revoke_token(engine, name)
    if not revoked:
        fail(f"no token named {name!r} is in use")
    click.echo(f"Token {name.strip()} revoked.")
