"""``licusage servers list|set-remove-command``: the license servers sessions are read from."""

from __future__ import annotations

import click

from ..sources import remove
from ..validation import describe
from ._common import db_option, fail, opened_store, render_table


@click.group()
def servers() -> None:
    """The license servers sessions are imported from, and how Logout reaches each.

    \b
    Example:
      licusage servers list
      licusage servers set-remove-command lic1 \\
        "lmutil lmremove -c 27000@lic1 -h {feature} {handle_host} {handle_port} {handle_id}"
    """


@servers.command("list")
@db_option
def list_(db_url: str | None) -> None:
    """List the servers: name, kind and removal command."""
    with opened_store(db_url) as engine:
        known = remove.list_servers(engine)
    if not known:
        click.echo(
            "No license servers (import from one: licusage import lmstat FILE --server NAME)."
        )
        return
    rows = [[describe(s.name), s.kind, describe(s.remove_command or "(none)")] for s in known]
    click.echo(render_table(["Server", "Kind", "Removal command"], rows))


@servers.command("set-remove-command")
@click.argument("server")
@click.argument("template", required=False)
@click.option("--clear", is_flag=True, help="Remove the command: Logout then refuses.")
@db_option
def set_remove_command(server: str, template: str | None, clear: bool, db_url: str | None) -> None:
    """Set the command an admin's Logout runs, once per checkout, to remove it on SERVER.

    TEMPLATE is split like a shell line and run without a shell, each run limited to 30 s.
    Placeholders: {feature} {user} {host} {display} {handle} {handle_host} {handle_port}
    {handle_id} {server}.

    \b
    Examples:
      licusage servers set-remove-command lic1 \\
        "lmutil lmremove -c 27000@lic1 -h {feature} {handle_host} {handle_port} {handle_id}"
      licusage servers set-remove-command lic1 \\
        "lmutil lmremove -c 27000@lic1 {feature} {user} {host} {display}"
      licusage servers set-remove-command rlm1 "rlmutil rlmremove -c 5053@rlm1 -h {handle}"
    """
    if clear == (template is not None):
        fail("give TEMPLATE, or --clear (not both)")
    with opened_store(db_url) as engine:
        remove.set_remove_command(engine, server, None if clear else template)
    click.echo(f"{describe(server)}: " + ("no removal command" if clear else "removal command set"))
