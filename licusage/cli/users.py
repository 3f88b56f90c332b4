"""``licusage users add|remove|list``: the dashboard's sign-in accounts."""

from __future__ import annotations

import sys

import click

from .. import accounts
from ..actions import ROLES
from ._common import db_option, fail, opened_store, render_table


@click.group()
def users() -> None:
    """Manage the dashboard's sign-in accounts (used with 'licusage serve --auth').

    \b
    Example:
      licusage users add alice --role admin
      licusage users list
    """


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="admin may log out.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (scripts).")
@click.option("--replace", is_flag=True, help="Change the password and role of an existing one.")
@db_option
def add(name: str, role: str, password_stdin: bool, replace: bool, db_url: str | None) -> None:
    """Add a sign-in account; the password is prompted (stored as a salted bcrypt hash).

    \b
    Example:
      licusage users add alice --role admin
      printf '%s\\n' "$PASSWORD" | licusage users add bob --role viewer --password-stdin
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with opened_store(db_url) as engine:
        accounts.add_account(engine, name, password, role, replace=replace)
    click.echo(f"Account {name.strip()} ({role}) saved.")


@users.command("remove")
@click.argument("name")
@db_option
def remove(name: str, db_url: str | None) -> None:
    """Remove a sign-in account: it can no longer sign in or open the dashboard.

    \b
    Example:
      licusage users remove bob
    """
    with opened_store(db_url) as engine:
        removed = accounts.remove_account(engine, name)
    if not removed:
        fail(f"no account named {name!r}")
    click.echo(f"Account {name.strip()} removed.")


@users.command("list")
@db_option
def list_(db_url: str | None) -> None:
    """List the sign-in accounts and their roles (never passwords).

    \b
    Example:
      licusage users list
    """
    with opened_store(db_url) as engine:
        frame = accounts.list_accounts(engine)
    if frame.empty:
        click.echo("No accounts (add one: licusage users add NAME --role admin).")
        return
    rows = [
        [str(r["user"]), str(r["role"]), r["created_at"].strftime("%Y-%m-%d %H:%M UTC")]
        for r in frame.to_dict("records")
    ]
    click.echo(render_table(["User", "Role", "Created"], rows))
