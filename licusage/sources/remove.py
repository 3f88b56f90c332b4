"""Logout that reaches the license server: each server's own removal command, per checkout.

A server's removal command is an argument template stored with the server (``licusage servers
set-remove-command``), e.g. for FlexLM::

    lmutil lmremove -c 27000@lic1 -h {feature} {handle_host} {handle_port} {handle_id}
    lmutil lmremove -c 27000@lic1 {feature} {user} {host} {display}

and for RLM (``rlmremove`` takes the ISV server's host and port, the ISV and the handle, which an
``rlmstat -a`` snapshot keeps as ``ISV HOST/PORT HANDLE``)::

    rlmutil rlmremove -q {handle_host} {handle_port} {isv} {handle_id}

It is split like a shell line once, when stored, and run without a shell: a placeholder is
always one argument, whatever the user or host name holds. :func:`remove_on_servers` runs it
for every checkout of the sessions an admin logs out, each time-limited; a session is ended
only when every removal of it succeeded (see :func:`licusage.actions.logout_sessions`).
"""

from __future__ import annotations

import logging
import shlex
import string
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db import store_operation, write
from ..errors import InvalidInput
from ..models import APP_SOURCE, checkouts_t, servers_t, sessions_t
from ..sessions import rows_for_ids

log = logging.getLogger(__name__)

# what a removal command may name, from the checkout (handle_* and isv: a snapshot's handle,
# "host/port id" from FlexLM's lmstat, "isv host/port id" from RLM's rlmstat)
PLACEHOLDERS = (
    "feature",
    "user",
    "host",
    "display",
    "handle",
    "handle_host",
    "handle_port",
    "handle_id",
    "isv",
    "server",
)
REMOVE_TIMEOUT = 30.0  # seconds one removal may take before it counts as failed


@dataclass(frozen=True)
class ServerInfo:
    """A license server: its name, kind and removal command (None: not configured)."""

    name: str
    kind: str
    remove_command: str | None


def parse_template(template: str) -> list[str]:
    """The arguments of a removal command template; raises InvalidInput for an empty one, one
    that does not split as a shell line, or a placeholder not in :data:`PLACEHOLDERS`."""
    if not isinstance(template, str) or not template.strip():
        raise InvalidInput("the removal command is empty")
    try:
        arguments = shlex.split(template)
    except ValueError as error:
        raise InvalidInput(f"the removal command does not parse: {error}") from None
    for argument in arguments:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(argument) if name]
        except ValueError as error:
            raise InvalidInput(f"bad placeholder in {argument!r}: {error}") from None
        unknown = [name for name in fields if name not in PLACEHOLDERS]
        if unknown:
            raise InvalidInput(
                f"unknown placeholder {{{unknown[0]}}} in the removal command "
                f"(use {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
    return arguments


@store_operation
def set_remove_command(engine: Engine, server: str, template: str | None) -> None:
    """Store (or with None, clear) the removal command of the license server named `server`.
    Raises InvalidInput for an unknown server or a bad template."""
    if template is not None:
        parse_template(template)
    with write(engine) as conn:
        updated = conn.execute(
            sa.update(servers_t).where(servers_t.c.name == server).values(remove_command=template)
        ).rowcount
    if not updated:
        raise InvalidInput(f"no license server named {server!r} (import from it first)")


@store_operation
def list_servers(engine: Engine) -> list[ServerInfo]:
    """Every license server the store knows, by name."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(servers_t.c.name, servers_t.c.kind, servers_t.c.remove_command).order_by(
                servers_t.c.name
            )
        ).all()
    return [ServerInfo(*row) for row in rows]


def command_for(arguments: list[str], checkout: Mapping[str, object]) -> list[str]:
    """The removal command's arguments for one checkout (a missing value is empty)."""
    handle = str(checkout.get("handle") or "")
    where, _, handle_id = handle.rpartition(" ")
    isv, _, where = where.rpartition(" ")
    handle_host, _, handle_port = where.partition("/")
    values = {name: str(checkout.get(name) or "") for name in PLACEHOLDERS}
    values.update(handle_host=handle_host, handle_port=handle_port, handle_id=handle_id, isv=isv)
    return [argument.format(**values) for argument in arguments]


def _run(command: list[str], timeout: float) -> str | None:
    """None when the command succeeded, else why not (one line)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"{command[0]} did not finish within {timeout:g} s"
    except OSError as error:
        return f"{command[0]} could not run: {error.strerror or error}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"{command[0]} failed (exit {done.returncode})" + (f": {said[-1]}" if said else "")
    return None


@store_operation
def remove_on_servers(
    engine: Engine, session_ids: Iterable[int], timeout: float = REMOVE_TIMEOUT
) -> dict[int, str]:
    """Run the removal command for every active checkout of those of `session_ids` that came
    from a license server; returns why, for each session a removal failed for (a server with no
    removal command, a command that failed or hung). App sessions need no removal."""
    ids = [int(i) for i in session_ids]
    query = (
        sa.select(
            checkouts_t.c.session_id,
            checkouts_t.c.feature,
            checkouts_t.c.user_name.label("user"),
            checkouts_t.c.host,
            checkouts_t.c.display,
            checkouts_t.c.handle,
            servers_t.c.name.label("server"),
            servers_t.c.remove_command,
        )
        .select_from(
            checkouts_t.join(servers_t, servers_t.c.id == checkouts_t.c.server_id).join(
                sessions_t, sessions_t.c.id == checkouts_t.c.session_id
            )
        )
        .where(
            checkouts_t.c.in_at.is_(None),
            sessions_t.c.ended_at.is_(None),
            sessions_t.c.source != APP_SOURCE,
        )
        .order_by(checkouts_t.c.session_id, checkouts_t.c.id)
    )
    with engine.connect() as conn:
        rows = rows_for_ids(conn, query, checkouts_t.c.session_id, ids)
    failed: dict[int, str] = {}
    for row in rows:
        checkout = row._asdict()
        session_id = int(checkout["session_id"])
        if session_id in failed:
            continue
        if not row.remove_command:
            failed[session_id] = (
                f"server {row.server!r} has no removal command "
                "(licusage servers set-remove-command)"
            )
            continue
        command = command_for(parse_template(row.remove_command), checkout)
        why = _run(command, timeout)
        if why is None:
            log.info("removed %s of %s on %s", row.feature, row.user, row.server)
        else:
            failed[session_id] = f"{row.feature} on {row.server}: {why}"
            log.warning("removal failed for session %d: %s", session_id, why)
    return failed
