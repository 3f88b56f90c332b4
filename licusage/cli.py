"""The ``licusage`` command line: a thin layer over the library (see ``licusage --help``).

Every command takes ``--db URL``. Bad input of any kind (a malformed option, an unknown product
or license type, an unreachable database, any :class:`~licusage.errors.LicusageError`) exits
with code 2 and one line on stderr, having changed nothing.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import click
import pandas as pd
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from . import actions, durations, export, queries
from . import db as store_db
from . import demo as demo_data
from .errors import InvalidInput, LicusageError
from .sessions import MAX_SESSION_ID

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "csv", "json")
EXIT_BAD_INPUT = 2


class CliError(click.ClickException):
    """Bad input or an unusable store: one line on stderr, exit code 2."""

    exit_code = EXIT_BAD_INPUT


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class LicusageGroup(click.Group):
    """A group whose errors are one line on stderr (no usage block, no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LicusageError as error:
            raise CliError(str(error)) from None
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
            raise CliError(store_db.describe_db_error(error)) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted: nothing changed.", err=True)
            sys.exit(1)
        except click.ClickException as error:
            message = _one_line(error.format_message())
            if isinstance(error, click.UsageError) and error.ctx is not None:
                message += f" (see '{error.ctx.command_path} --help')"
            click.echo(f"Error: {message}", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            # the reader went away (``licusage sessions | head``): point stdout at devnull so
            # that the interpreter's final flush cannot fail again, and exit quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


# --- option types ---------------------------------------------------------------------------


class DurationType(click.ParamType):
    """A duration such as ``30s``, ``45m``, ``2h``, ``1h30m`` (see :mod:`licusage.durations`)."""

    name = "duration"

    def __init__(self, minimum: timedelta = timedelta(0)) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return durations.parse_duration(value, minimum=self.minimum)
        except InvalidInput as error:
            self.fail(str(error), param, ctx)


class SessionIdType(click.ParamType):
    """A session id: a whole number >= 1."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if (
            not text.isascii()
            or not text.isdigit()
            or len(text) > 19
            or not 1 <= int(text) <= MAX_SESSION_ID
        ):
            self.fail(f"{value!r} is not a session id (a whole number such as 42)", param, ctx)
        return int(text)


def parse_license_options(values: Sequence[str]) -> dict[str, list[str]] | None:
    """``["Case Management=Concurrent User", ...]`` as product -> license types.

    The text is split at its first ``=``; the same product given twice means either type.
    Raises :class:`~licusage.errors.InvalidInput` for text without a product or a type.
    """
    if not values:
        return None
    wanted: dict[str, list[str]] = {}
    for value in values:
        product, sep, license_type = value.partition("=")
        product, license_type = product.strip(), license_type.strip()
        if not sep or not product or not license_type:
            raise InvalidInput(
                f"--license {value!r} is not PRODUCT=TYPE "
                "(e.g. --license 'Case Management=Concurrent User')"
            )
        types = wanted.setdefault(product, [])
        if license_type not in types:
            types.append(license_type)
    return wanted


def db_option(func: F) -> F:
    """The ``--db URL`` option every command takes (passed on as ``db_url``)."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="SQLAlchemy URL of the store, e.g. sqlite:///usage.sqlite or "
        "postgresql://user@host/licusage. Default: $LICUSAGE_DATABASE_URL, else the embedded "
        "SQLite file in your user data directory.",
    )(func)


def store_url(db_url: str | None) -> str | None:
    """The command's ``--db``, else the one given before the command (``licusage --db URL ...``),
    else None (:func:`licusage.db.connect` then uses $LICUSAGE_DATABASE_URL or the embedded file).
    """
    if db_url:
        return db_url
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().params.get("db_url") if ctx is not None else None


def open_store(db_url: str | None) -> Engine:
    """The store (see :func:`store_url`); errors exit 2 via the group."""
    return store_db.connect(store_url(db_url))


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table: aligned text, local times; csv and json: UTC times in ISO 8601, "
        "idle in whole seconds.",
    )(func)


# --- rendering ------------------------------------------------------------------------------


def _local(value: Any) -> str:
    """A UTC timestamp as local time, to the minute; blank when missing."""
    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).to_pydatetime().astimezone().strftime("%Y-%m-%d %H:%M")


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().isoformat()


def _text(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, a dashed line under the headers."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def usage_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """session_usage rows as JSON-ready dicts: ISO 8601 UTC times, ``idle`` in whole seconds."""
    records = []
    for row in frame.to_dict("records"):
        record: dict[str, Any] = {}
        for column, value in row.items():
            if column == "session_id":
                record[column] = int(value)
            elif column in ("started_at", "last_activity"):
                record[column] = _iso(value)
            elif column == "idle":
                record[column] = max(int(pd.Timedelta(value).total_seconds()), 0)
            else:
                record[str(column)] = _text(value)
        records.append(record)
    return records


def _write_csv(records: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV by the rules of :mod:`licusage.export` (no cell runs as a formula)."""
    click.echo(export.records_csv(records, columns), nl=False)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- commands -------------------------------------------------------------------------------


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


@main.command()
@click.option(
    "--users",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="How many users the suite has.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=14,
    show_default=True,
    help="Days of history, ending now.",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Random seed: the same seed and time give the same data.",
)
@click.option(
    "--active",
    type=click.IntRange(0),
    help="Large store: this many open sessions (bulk-loaded; see licusage.bulk).",
)
@click.option(
    "--history",
    type=click.IntRange(0),
    help="Large store: this many ended sessions over --days (bulk-loaded).",
)
@db_option
def demo(
    users: int,
    days: int,
    seed: int,
    active: int | None,
    history: int | None,
    db_url: str | None,
) -> None:
    """Fill an empty store with realistic demo data (the seed's four products).

    Refuses a store that already holds sessions. With --active or --history it writes a large
    store of exactly that many sessions, generated vectorised and bulk-loaded.

    \b
    Example:
      licusage --db sqlite:///demo.sqlite demo --users 2000 --days 30
      licusage demo --db sqlite:///demo.sqlite --users 50 --days 7 --seed 3
      licusage demo --db sqlite:///big.sqlite --users 20000 --active 100000 \\
        --history 2000000 --days 365
    """
    engine = open_store(db_url)
    try:
        if active is not None or history is not None:
            from . import bulk

            summary = bulk.generate_large(
                engine,
                users=users,
                active=active or 0,
                history=history or 0,
                days=days,
                seed=seed,
                progress=sys.stderr.isatty(),
            )
        else:
            summary = demo_data.generate(
                engine, users=users, days=days, seed=seed, progress=sys.stderr.isatty()
            )
    finally:
        engine.dispose()
    click.echo(
        f"Demo data written: {_plural(summary.users, 'user')}, {summary.pools} pools, "
        f"{_plural(summary.sessions, 'session')} ({summary.active_sessions} active), "
        f"{summary.holds} licenses granted, {_plural(summary.denials, 'denial')}."
    )


@main.command()
@click.option("--user", "user", metavar="TEXT", help="Part of a user name (any case).")
@click.option(
    "--license",
    "licenses",
    metavar="PRODUCT=TYPE",
    multiple=True,
    help="Only sessions holding this license. Repeat it: several types of one product match "
    "either; several products must all match.",
)
@click.option(
    "--idle-over",
    type=DurationType(),
    help="Only sessions idle at least this long (30s, 45m, 2h, 1d, 1h30m).",
)
@format_option
@db_option
def sessions(
    user: str | None,
    licenses: tuple[str, ...],
    idle_over: timedelta | None,
    output_format: str,
    db_url: str | None,
) -> None:
    """List active sessions, oldest last activity first.

    \b
    Examples:
      licusage sessions --license "Case Management=Concurrent User"
      licusage sessions --user smith --idle-over 2h --format json
    """
    license_types = parse_license_options(licenses)
    engine = open_store(db_url)
    try:
        frame = queries.session_usage(
            engine, user=user, license_types=license_types, idle_over=idle_over
        )
    finally:
        engine.dispose()
    records = usage_records(frame)
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif output_format == "csv":
        _write_csv(records, [str(c) for c in frame.columns])
    else:
        products = [str(c) for c in frame.columns[len(queries.BASE_COLUMNS) :]]
        headers = ["ID", "User", "Host", "Started", "Last Activity", "Idle", *products]
        rows = [
            [
                str(r["session_id"]),
                r["user"],
                r["host"] or "",
                _local(r["started_at"]),
                _local(r["last_activity"]),
                durations.format_duration(r["idle"]),
                *(r[p] if isinstance(r[p], str) else "" for p in products),
            ]
            for r in frame.to_dict("records")
        ]
        if rows:
            click.echo(render_table(headers, rows))
        click.echo(f"{_plural(len(rows), 'active session')} (times are local)")


@main.command()
@format_option
@db_option
def pools(output_format: str, db_url: str | None) -> None:
    """Show each license pool: seats, seats in use, free seats, denials today.

    \b
    Example:
      licusage pools --format csv
    """
    engine = open_store(db_url)
    try:
        frame = queries.pool_usage(engine)
    finally:
        engine.dispose()
    records = [
        {
            "product": r["product"],
            "license_type": r["license_type"],
            "kind": r["kind"],
            "seats": int(r["seats"]),
            "in_use": int(r["in_use"]),
            "free": int(r["free"]),
            "denials_today": int(r["denials_today"]),
            "expires_at": _iso(r["expires_at"]),
        }
        for r in frame.to_dict("records")
    ]
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif output_format == "csv":
        _write_csv(records, list(frame.columns))
    elif not records:
        click.echo("No license pools yet (try: licusage demo).")
    else:
        headers = ["Product", "License Type", "Seats", "In Use", "Free", "Denials Today", "Expires"]
        rows = [
            [
                r["product"],
                r["license_type"],
                str(r["seats"]),
                str(r["in_use"]),
                str(r["free"]),
                str(r["denials_today"]),
                _local(r["expires_at"]),
            ]
            for r in records
        ]
        click.echo(render_table(headers, rows))


def stdin_is_terminal() -> bool:
    """Whether a person can answer a confirmation prompt."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, AttributeError):
        return False


def _describe_targets(engine: Engine, ids: list[int]) -> list[int]:
    """Print what logging `ids` out would do; return the ids of the active sessions."""
    found = queries.sessions_by_id(engine, ids)
    active = found[found["ended_at"].isna()]
    active_ids = [int(i) for i in active["session_id"]]
    held = queries.session_licenses(engine, active_ids)
    licenses: dict[int, list[str]] = {}
    for r in held.to_dict("records"):
        licenses.setdefault(int(r["session_id"]), []).append(
            f"{r['product']} ({r['license_type']})"
        )
    if active_ids:
        click.echo(f"About to log out {_plural(len(active_ids), 'session')}:", err=True)
        for r in active.to_dict("records"):
            freed = ", ".join(licenses.get(int(r["session_id"]), [])) or "no licenses"
            click.echo(f"  #{r['session_id']}  {r['user']}  frees: {freed}", err=True)
    ended = sorted(set(found["session_id"].astype(int)) - set(active_ids))
    unknown = sorted(set(ids) - set(found["session_id"].astype(int)))
    if ended:
        click.echo(f"Already ended: {', '.join(map(str, ended))}", err=True)
    if unknown:
        click.echo(f"Unknown: {', '.join(map(str, unknown))}", err=True)
    return active_ids


@main.command()
@click.argument("session_ids", metavar="ID...", nargs=-1, required=True, type=SessionIdType())
@click.option("--actor", required=True, metavar="NAME", help="Who logs them out (audited).")
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@db_option
def logout(session_ids: tuple[int, ...], actor: str, yes: bool, db_url: str | None) -> None:
    """Log sessions out by id, freeing their licenses; every logout is audited.

    Asks for confirmation on a terminal; without one, refuses unless --yes is given.

    \b
    Example:
      licusage logout 12 15 --actor alice.admin
      licusage logout 12 15 --actor alice.admin --yes
    """
    actor = actions.check_actor(actor)
    ids = sorted(set(session_ids))
    if not yes and not stdin_is_terminal():
        raise CliError("no terminal to confirm on: pass --yes to log sessions out; nothing changed")
    engine = open_store(db_url)
    try:
        if not yes:
            active = _describe_targets(engine, ids)
            if active and not click.confirm(
                f"Log out {_plural(len(active), 'session')} as {actor}?", err=True
            ):
                click.echo("Cancelled: nothing changed.", err=True)
                sys.exit(1)
        result = actions.logout_sessions(engine, ids, actor)
    finally:
        engine.dispose()
    _report_logout(result)


def _report_logout(result: actions.LogoutResult) -> None:
    def listed(ids: Sequence[int]) -> str:
        return ", ".join(map(str, ids)) if ids else "none"

    click.echo(f"Logged out: {listed(result.logged_out)}")
    if result.already_ended:
        click.echo(f"Already ended: {listed(result.already_ended)}")
    if result.unknown:
        click.echo(f"Unknown: {listed(result.unknown)}")


@main.command()
@click.option(
    "--idle-over",
    required=True,
    type=DurationType(minimum=timedelta(seconds=1)),
    help="End sessions idle longer than this (45m, 2h, 1d, 1h30m); a pool's own shorter "
    "idle limit applies to sessions holding it.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be ended.")
@click.option(
    "--actor", default="policy", show_default=True, metavar="NAME", help="Named in the audit."
)
@db_option
def reap(idle_over: timedelta, dry_run: bool, actor: str, db_url: str | None) -> None:
    """End idle sessions (reason idle_timeout), audited like a logout.

    \b
    Example:
      licusage reap --idle-over 8h --dry-run
      licusage reap --idle-over 8h
    """
    engine = open_store(db_url)
    try:
        result = actions.reap_idle(engine, idle_over, actor=actor, dry_run=dry_run)
        found = queries.sessions_by_id(engine, result.logged_out)
    finally:
        engine.dispose()
    users = dict(zip(found["session_id"].astype(int), found["user"], strict=True))
    verb = "Would end" if dry_run else "Ended"
    limit = durations.format_duration(idle_over)
    click.echo(f"{verb} {_plural(len(result.logged_out), 'idle session')} (limit {limit}).")
    if result.logged_out:
        rows = [
            [str(i), str(users.get(i, "")), durations.format_duration(result.idle[i])]
            for i in result.logged_out
        ]
        click.echo(render_table(["ID", "User", "Idle"], rows))


def fail(message: str) -> NoReturn:
    """Stop a command with one line on stderr and exit code 2 (for commands in other modules)."""
    raise CliError(message)


# Commands living in their own modules; they use the helpers above, hence imported last.
from .cli_db import db as db_commands  # noqa: E402
from .cli_serve import serve, users  # noqa: E402

for _command in (serve, users, db_commands):
    main.add_command(_command)
