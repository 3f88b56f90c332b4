"""``licusage import ...``: read license servers' logs and snapshots into the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import click

from .. import clock
from ..errors import InvalidInput, LicusageError
from ..sources import rlmstat
from ..sources.files import ImportResult
from ..sources.flexlm_log import import_flexlm_log
from ..sources.lmstat import import_lmstat
from ..sources.lmstat_info import WHAT as LMSTAT_I
from ..sources.lmstat_info import SeatsResult, import_lmstat_i, looks_like
from ..sources.mapping import FeatureMap, read_mapping
from ..sources.poll import DEFAULT_TIMEOUT, run_command
from ..sources.rlm_log import import_rlm_log
from ..sources.rlmstat import import_rlmstat
from ..sources.snapshot import ServerDown, SnapshotResult, read_text
from ._common import db_option, duration_option, opened_store, progress_option, show_progress

EXIT_SERVER_DOWN = 1

SERVER_HELP = "The license server's name (the sessions' source; any name you choose)."
MAP_HELP = "A TOML file mapping features to products and license types (see docs/sources.md)."
TZ_HELP = "The server's time zone, an IANA name such as Europe/Paris (default: UTC)."
AT_HELP = "When the snapshot was taken (ISO 8601; default: its own date line)."


@click.group("import")
def import_group() -> None:
    """Import license server data (FlexLM, RLM) into the store."""


def _report(result: ImportResult) -> None:
    counts = result.counts
    assert counts is not None
    click.echo(
        f"Read {result.lines} new lines ({result.bytes} bytes) of {result.files} file(s)"
        + (f", {result.skipped_bytes} bytes imported before" if result.skipped_bytes else "")
        + f": {counts.checkouts} checkouts, {counts.checkins} check-ins, "
        f"{counts.sessions_started} sessions started, {counts.sessions_ended} ended, "
        f"{counts.denials} denials, {counts.queued} queued, {counts.restarts} restarts"
        + (f", {counts.unmatched} check-ins of unseen checkouts" if counts.unmatched else "")
        + "."
    )


def _log_command(name: str, importer: Callable[..., ImportResult], help_text: str) -> None:
    """Add ``licusage import NAME FILE... --server NAME``, reading logs with `importer`."""

    @import_group.command(name, help=help_text)
    @click.argument("files", metavar="FILE...", nargs=-1, required=True)
    @click.option("--server", required=True, metavar="NAME", help=SERVER_HELP)
    @click.option("--map", "mapping", metavar="FILE", help=MAP_HELP)
    @click.option("--timezone", metavar="TZ", help=TZ_HELP)
    @progress_option
    @db_option
    def command(
        files: tuple[str, ...],
        server: str,
        mapping: str | None,
        timezone: str | None,
        progress: bool | None,
        db_url: str | None,
    ) -> None:
        feature_map = read_mapping(mapping)
        with opened_store(db_url) as engine:
            result = importer(
                engine,
                list(files),
                server=server,
                mapping=feature_map,
                timezone=timezone,
                progress=show_progress(progress),
            )
        _report(result)


_log_command(
    "flexlm-log",
    import_flexlm_log,
    """Import FlexLM debug logs (lmgrd -l); again later to add what the log gained.

    \b
    Example:
      licusage import flexlm-log /var/log/lmgrd.log --server cad1 --timezone Europe/Paris
    """,
)
_log_command(
    "rlm-log",
    import_rlm_log,
    """Import RLM report logs (an ISV server's REPORTLOG); again later to add what they gained.

    \b
    Example:
      licusage import rlm-log /var/rlm/acme.rl --server rlm1 --timezone Europe/Paris
    """,
)


def _report_snapshot(result: SnapshotResult, tool: str) -> None:
    counts = result.counts
    click.echo(
        f"Snapshot of {result.at:%Y-%m-%d %H:%M} UTC: {result.features} features, "
        f"{counts.checkouts} new checkouts, {counts.checkins} ended, "
        f"{counts.sessions_started} sessions started, {counts.sessions_ended} ended, "
        f"{result.seats_changed} seat counts changed, {result.reservations_started} reservations "
        f"new, {result.reservations_ended} ended."
    )
    for feature, (printed, listed) in sorted(result.mismatched.items()):
        click.echo(
            f"  note: {feature}: {tool} prints {printed} licenses in use, its listed checkouts "
            f"and reservations add up to {listed}",
            err=True,
        )
    for feature, expiry in sorted(result.outlived.items()):
        click.echo(
            f"  note: {feature}: {tool} lists licenses issued after the expiry its license file "
            f"gave ({expiry:%Y-%m-%d %H:%M} UTC): expiry cleared; import the renewed file's "
            "lmstat -i",
            err=True,
        )


def _report_seats(result: SeatsResult) -> None:
    click.echo(
        f"Seats from {result.at:%Y-%m-%d %H:%M} UTC: {result.features} features, "
        f"{result.seats_changed} seat counts changed, {result.expiries_changed} expiries changed"
        + (
            f", {len(result.expired)} expired ({', '.join(result.expired)})"
            if result.expired
            else ""
        )
        + (f", {len(result.uncounted)} uncounted" if result.uncounted else "")
        + "."
    )
    for moment, features in result.drops:
        click.echo(f"  from {moment:%Y-%m-%d %H:%M} UTC fewer seats of: {', '.join(features)}")


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"--at must be an ISO 8601 time such as 2026-03-02T10:00, not {value!r}"
        ) from None
    return clock.to_utc(parsed)


def _listing_options(at_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """FILE, --server, --at (described by `at_help`), --map, --timezone and --db: the options
    of every import of one server listing."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            (
                click.argument("file", metavar="FILE"),
                click.option("--server", required=True, metavar="NAME", help=SERVER_HELP),
                click.option("--at", "at", metavar="TIME", help=at_help),
                click.option("--map", "mapping", metavar="FILE", help=MAP_HELP),
                click.option("--timezone", metavar="TZ", help=TZ_HELP),
                db_option,
            )
        ):
            command = option(command)
        return command

    return decorate


def _listing_input(
    file: str, what: str, mapping: str | None, at: str | None
) -> tuple[str, FeatureMap, datetime | None]:
    """A listing's text (FILE, or - for standard input), its feature mapping and its --at."""
    text = sys.stdin.read() if file == "-" else read_text(file, what)
    return text, read_mapping(mapping), _parse_at(at)


@dataclass(frozen=True)
class _Status:
    """A server status command's output format: the tool's name, what its output is called in
    errors, and the importer of one snapshot."""

    tool: str
    what: str
    importer: Callable[..., SnapshotResult]


FLEXLM = _Status("lmstat", "lmstat -a output", import_lmstat)
RLM = _Status("rlmstat", rlmstat.WHAT, import_rlmstat)


def _snapshot_command(name: str, status: _Status, help_text: str) -> None:
    """Add ``licusage import NAME FILE --server NAME [--at TIME]`` for `status`'s output."""

    @import_group.command(name, help=help_text)
    @_listing_options(AT_HELP)
    def command(
        file: str,
        server: str,
        at: str | None,
        mapping: str | None,
        timezone: str | None,
        db_url: str | None,
    ) -> None:
        text, feature_map, when = _listing_input(file, status.what, mapping, at)
        with opened_store(db_url) as engine:
            try:
                result = status.importer(
                    engine,
                    text,
                    server=server,
                    source=file,
                    at=when,
                    timezone=timezone,
                    mapping=feature_map,
                )
            except ServerDown as error:
                click.echo(f"Error: {error}", err=True)
                sys.exit(EXIT_SERVER_DOWN)
        _report_snapshot(result, status.tool)


_snapshot_command(
    "lmstat",
    FLEXLM,
    """Reconcile the store with an lmutil lmstat -a snapshot (FILE, or - for standard input).

    A server reported down changes nothing (exit code 1).

    \b
    Example:
      lmutil lmstat -a -c 27000@lic1 > now.txt && licusage import lmstat now.txt --server lic1
    """,
)
_snapshot_command(
    "rlmstat",
    RLM,
    """Reconcile the store with an rlmutil rlmstat -a snapshot (FILE, or - for standard input).

    The rlm server or an ISV server reported down changes nothing (exit code 1).

    \b
    Example:
      rlmutil rlmstat -a -c 5053@rlm1 > now.txt && licusage import rlmstat now.txt --server rlm1
    """,
)


@import_group.command("lmstat-i")
@_listing_options("From when the license file's seats count (ISO 8601; default: now).")
def lmstat_i_command(
    file: str,
    server: str,
    at: str | None,
    mapping: str | None,
    timezone: str | None,
    db_url: str | None,
) -> None:
    """Record the seats of an lmutil lmstat -i listing (FILE, or - for standard input): each
    feature's unexpired licenses from --at on, and the drops as they expire; the seats a debug
    log alone does not know.

    \b
    Example (seats for a log that starts on 30 March 2016, Paris time):
      lmutil lmstat -i -c 27000@lic1 > file.txt
      licusage import lmstat-i file.txt --server lic1 --at 2016-03-29 --timezone Europe/Paris
    """
    text, feature_map, when = _listing_input(file, LMSTAT_I, mapping, at)
    with opened_store(db_url) as engine:
        result = import_lmstat_i(
            engine,
            text,
            server=server,
            source=file,
            at=when,
            timezone=timezone,
            mapping=feature_map,
        )
    _report_seats(result)


@click.group("poll")
def poll_group() -> None:
    """Poll license servers and keep the store in step with them."""


def _poll_command(name: str, status: _Status, example: str, server_name: str) -> None:
    """Add ``licusage poll NAME --server NAME --command CMD`` for `status`'s output (`example`:
    such a command, for the help)."""
    also = (
        "\n\n    An lmstat -i command (its heading tells it apart) records the license file's seats"
        "\n    and expiries, as 'licusage import lmstat-i' does."
        if status is FLEXLM
        else ""
    )
    help_text = f"""Run the {status.tool} command every interval and reconcile the store with its
    output.

    A failed or hanging command, or a server reported down, changes nothing; the poll goes on.{also}

    \b
    Example:
      licusage poll {name} --server {server_name} --command "{example}" --every 1m
    """

    @poll_group.command(name, help=help_text)
    @click.option("--server", required=True, metavar="NAME", help=SERVER_HELP)
    @click.option(
        "--command",
        "command",
        required=True,
        metavar="CMD",
        help=f'The status command, e.g. "{example}".',
    )
    @duration_option("--every", default="1m", help="Time between two polls.")
    @duration_option(
        "--timeout",
        default=f"{int(DEFAULT_TIMEOUT.total_seconds())}s",
        help="Longest a poll may take; a command still running then is killed.",
    )
    @click.option(
        "--once",
        is_flag=True,
        help="Poll once and exit (exit code 2 on failure, 1 when the server is down).",
    )
    @click.option(
        "--rounds",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Stop after N polls (default: run until stopped).",
    )
    @click.option("--map", "mapping", metavar="FILE", help=MAP_HELP)
    @click.option("--timezone", metavar="TZ", help=TZ_HELP)
    @db_option
    def poll(
        server: str,
        command: str,
        every: timedelta,
        timeout: timedelta,
        once: bool,
        rounds: int | None,
        mapping: str | None,
        timezone: str | None,
        db_url: str | None,
    ) -> None:
        feature_map = read_mapping(mapping)
        with opened_store(db_url) as engine:
            done = 0
            while True:
                started = time.monotonic()
                try:
                    text = run_command(command, timeout)
                    listing = status is FLEXLM and looks_like(text)  # lmstat -i: the license file
                    result = (import_lmstat_i if listing else status.importer)(
                        engine,
                        text,
                        server=server,
                        source=f"the output of {command!r}",
                        timezone=timezone,
                        mapping=feature_map,
                    )
                    if isinstance(result, SeatsResult):
                        _report_seats(result)
                    else:
                        _report_snapshot(result, status.tool)
                except ServerDown as error:
                    if once:
                        click.echo(f"Error: {error}", err=True)
                        sys.exit(EXIT_SERVER_DOWN)
                    click.echo(f"{datetime.now():%H:%M:%S} {error}", err=True)
                except LicusageError as error:
                    if once:
                        raise
                    click.echo(f"{datetime.now():%H:%M:%S} poll failed: {error}", err=True)
                done += 1
                if once or (rounds is not None and done >= rounds):
                    return
                time.sleep(max(0.0, every.total_seconds() - (time.monotonic() - started)))


_poll_command("flexlm", FLEXLM, "lmutil lmstat -a -c 27000@lic1", "lic1")
_poll_command("rlm", RLM, "rlmutil rlmstat -a -c 5053@rlm1", "rlm1")
