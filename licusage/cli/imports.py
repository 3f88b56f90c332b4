"""``licusage import ...``: read license servers' logs and snapshots into the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import click

from .. import clock
from ..errors import InvalidInput, LicusageError
from ..sources.files import ImportResult
from ..sources.flexlm_log import import_flexlm_log
from ..sources.lmstat import ServerDown, SnapshotResult, import_lmstat, read_text
from ..sources.mapping import read_mapping
from ..sources.poll import DEFAULT_TIMEOUT, run_command
from ..sources.rlm_log import import_rlm_log
from ._common import DurationType, db_option, open_store, progress_option, show_progress

EXIT_SERVER_DOWN = 1

SERVER_HELP = "The license server's name (the sessions' source; any name you choose)."
MAP_HELP = "A TOML file mapping features to products and license types (see docs/sources.md)."
TZ_HELP = "The server's time zone, an IANA name such as Europe/Paris (default: UTC)."


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
        engine = open_store(db_url)
        try:
            result = importer(
                engine,
                list(files),
                server=server,
                mapping=feature_map,
                timezone=timezone,
                progress=show_progress(progress),
            )
        finally:
            engine.dispose()
        _report(result)


_log_command(
    "flexlm-log",
    import_flexlm_log,
    """Import FlexLM debug logs (lmgrd -l); again later to add what the log gained.

    Example:
      licusage import flexlm-log /var/log/lmgrd.log --server cad1 --timezone Europe/Paris
    """,
)
_log_command(
    "rlm-log",
    import_rlm_log,
    """Import RLM report logs (an ISV server's REPORTLOG); again later to add what they gained.

    Example:
      licusage import rlm-log /var/rlm/acme.rl --server rlm1 --timezone Europe/Paris
    """,
)


def _report_snapshot(result: SnapshotResult) -> None:
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
            f"  note: {feature}: lmstat prints {printed} licenses in use, its listed checkouts "
            f"and reservations add up to {listed}",
            err=True,
        )


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


@import_group.command("lmstat")
@click.argument("file", metavar="FILE")
@click.option("--server", required=True, metavar="NAME", help=SERVER_HELP)
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="When the snapshot was taken (ISO 8601; default: its own date line).",
)
@click.option("--map", "mapping", metavar="FILE", help=MAP_HELP)
@click.option("--timezone", metavar="TZ", help=TZ_HELP)
@db_option
def lmstat(
    file: str,
    server: str,
    at: str | None,
    mapping: str | None,
    timezone: str | None,
    db_url: str | None,
) -> None:
    """Reconcile the store with an lmutil lmstat -a snapshot (FILE, or - for standard input).

    A server reported down changes nothing (exit code 1).

    Example:
      lmutil lmstat -a -c 27000@lic1 > now.txt && licusage import lmstat now.txt --server lic1
    """
    text = sys.stdin.read() if file == "-" else read_text(file)
    feature_map = read_mapping(mapping)
    when = _parse_at(at)
    engine = open_store(db_url)
    try:
        result = import_lmstat(
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
    finally:
        engine.dispose()
    _report_snapshot(result)


@click.group("poll")
def poll_group() -> None:
    """Poll license servers and keep the store in step with them."""


@poll_group.command("flexlm")
@click.option("--server", required=True, metavar="NAME", help=SERVER_HELP)
@click.option(
    "--command",
    "command",
    required=True,
    metavar="CMD",
    help='The status command, e.g. "lmutil lmstat -a -c 27000@lic1".',
)
@click.option(
    "--every",
    type=DurationType(minimum=timedelta(seconds=1)),
    default="1m",
    show_default=True,
    help="Time between two polls.",
)
@click.option(
    "--timeout",
    type=DurationType(minimum=timedelta(seconds=1)),
    default=f"{int(DEFAULT_TIMEOUT.total_seconds())}s",
    show_default=True,
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
def poll_flexlm(
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
    """Run the lmstat command every interval and reconcile the store with its output.

    A failed or hanging command, or a server reported down, changes nothing; the poll goes on.

    Example:
      licusage poll flexlm --server lic1 --command "lmutil lmstat -a -c 27000@lic1" --every 1m
    """
    feature_map = read_mapping(mapping)
    engine = open_store(db_url)
    try:
        done = 0
        while True:
            started = time.monotonic()
            try:
                text = run_command(command, timeout)
                result = import_lmstat(
                    engine,
                    text,
                    server=server,
                    source=f"the output of {command!r}",
                    timezone=timezone,
                    mapping=feature_map,
                )
                _report_snapshot(result)
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
    finally:
        engine.dispose()
