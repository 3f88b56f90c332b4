"""The ``licusage`` command line: a thin layer over the library (see ``licusage --help``).

One module per command group: :mod:`~licusage.cli.store` (demo, sessions, pools, logout, reap),
:mod:`~licusage.cli.serve`, :mod:`~licusage.cli.db`, :mod:`~licusage.cli.users`, :mod:`~licusage.cli.tokens`,
:mod:`~licusage.cli.alerts`, :mod:`~licusage.cli.rollup`, :mod:`~licusage.cli.imports`,
:mod:`~licusage.cli.servers`; what they share (``--db``, ``opened_store``, formats, option
types and options such as ``duration_option``, :func:`fail`) is in :mod:`licusage.cli._common`. A new command
goes in its group's module and is registered below.

Every command takes ``--db URL``. Bad input of any kind (a malformed option, an unknown product
or license type, an unreachable database, any :class:`~licusage.errors.LicusageError`) exits
with code 2 and one line on stderr, having changed nothing.
"""

from __future__ import annotations

import click

from . import alerts, db, imports, rollup, serve, servers, store, tokens, users
from ._common import (
    EXIT_BAD_INPUT,
    FORMATS,
    CliError,
    DurationType,
    LicusageGroup,
    SessionIdType,
    db_option,
    duration_option,
    fail,
    format_option,
    open_store,
    opened_store,
    parse_license_options,
    render_table,
    store_url,
    usage_records,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "FORMATS",
    "CliError",
    "DurationType",
    "LicusageGroup",
    "SessionIdType",
    "db_option",
    "duration_option",
    "fail",
    "format_option",
    "main",
    "open_store",
    "opened_store",
    "parse_license_options",
    "render_table",
    "store_url",
    "usage_records",
]


@click.group(cls=LicusageGroup)
@click.version_option(package_name="licusage")
@db_option
def main(db_url: str | None) -> None:
    """See and manage who holds which software license.

    --db may come before the command or after it.

    \b
    Example:
      licusage demo && licusage sessions --license "Case Management=Concurrent User"
      licusage --db sqlite:///demo.sqlite demo --users 2000 --days 30
    """


for _command in (
    store.demo,
    store.sessions,
    store.pools,
    store.logout,
    store.reap,
    serve.serve,
    users.users,
    db.db,
    imports.import_group,
    imports.poll_group,
    servers.servers,
    tokens.tokens,
    alerts.alerts,
    rollup.rollup,
):
    main.add_command(_command)
