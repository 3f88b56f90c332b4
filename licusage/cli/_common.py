"""What every ``licusage`` command shares: the group's error handling, ``--db`` and
``--format``, option types (durations, session ids), table/CSV/JSON rendering and :func:`fail`.

A command in any module of :mod:`licusage.cli` uses these to behave like the others: any
:class:`~licusage.errors.LicusageError` it raises becomes one ``Error:`` line and exit code 2.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import click
import pandas as pd
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import db as store_db
from .. import durations, export
from ..errors import InvalidInput, LicusageError
from ..sessions import MAX_SESSION_ID
from ..validation import describe

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


def progress_option(func: F) -> F:
    """The ``--progress/--no-progress`` option of long commands (passed on as ``progress``)."""
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: on a terminal).",
    )(func)


def show_progress(value: bool | None) -> bool:
    """Whether to show a progress bar: as asked, else when stderr is a terminal."""
    return sys.stderr.isatty() if value is None else value


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


@contextmanager
def opened_store(db_url: str | None) -> Iterator[Engine]:
    """The store (see :func:`store_url`) for a ``with`` block, disposed of after it; errors
    exit 2 via the group."""
    engine = open_store(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def whole_option(
    flag: str, low: int, high: int | None = None, *, default: int | None = None, help: str
) -> Callable[[F], F]:
    """An option taking a whole number from `low` (to `high`), its default (if any) shown."""
    return click.option(
        flag,
        type=click.IntRange(low, high),
        default=default,
        show_default=default is not None,
        help=help,
    )


def duration_option(
    *decls: str,
    minimum: timedelta = timedelta(seconds=1),
    default: str | None = None,
    required: bool = False,
    help: str,
) -> Callable[[F], F]:
    """An option taking a duration of at least `minimum` (:class:`DurationType`, shown as
    ``DURATION``), its default (if any) shown."""
    return click.option(
        *decls,
        type=DurationType(minimum=minimum),
        default=default,
        required=required,
        show_default=default is not None,
        help=help,
    )


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


def local_time(value: Any) -> str:
    """A UTC timestamp as local time, to the minute; blank when missing."""
    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).to_pydatetime().astimezone().strftime("%Y-%m-%d %H:%M")


def iso_utc(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().isoformat()


def _text(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, a dashed line under the headers."""
    # stored text is printed escaped: a newline or terminal escape in a name cannot forge lines
    rows = [[describe(cell) for cell in row] for row in rows]
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
                record[column] = iso_utc(value)
            elif column == "idle":
                record[column] = max(int(pd.Timedelta(value).total_seconds()), 0)
            else:
                record[str(column)] = _text(value)
        records.append(record)
    return records


def write_csv(records: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV by the rules of :mod:`licusage.export` (no cell runs as a formula)."""
    click.echo(export.records_csv(records, columns), nl=False)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def stdin_is_terminal() -> bool:
    """Whether a person can answer a confirmation prompt."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, AttributeError):
        return False


def fail(message: str) -> NoReturn:
    """Stop a command with one line on stderr and exit code 2 (for commands in other modules)."""
    raise CliError(message)
