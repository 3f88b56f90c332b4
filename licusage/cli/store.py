"""``licusage demo``, ``sessions``, ``pools``, ``logout`` and ``reap``: the store's contents."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import timedelta

import click
import pandas as pd

from .. import actions, durations, queries
from .. import demo as demo_data
from ..models import APP_SOURCE
from ..validation import describe
from ._common import (
    CliError,
    SessionIdType,
    db_option,
    duration_option,
    format_option,
    iso_utc,
    local_time,
    opened_store,
    parse_license_options,
    plural,
    render_table,
    stdin_is_terminal,
    usage_records,
    whole_option,
    write_csv,
)


@click.command()
@whole_option("--users", 1, 1_000_000, default=200, help="How many users the suite has.")
@whole_option("--days", 1, 3650, default=14, help="Days of history, ending now.")
@whole_option(
    "--seed", 0, default=0, help="Random seed: the same seed and time give the same data."
)
@whole_option(
    "--active", 0, help="Large store: this many open sessions (bulk-loaded; see licusage.bulk)."
)
@whole_option(
    "--history", 0, help="Large store: this many ended sessions over --days (bulk-loaded)."
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
    with opened_store(db_url) as engine:
        if active is not None or history is not None:
            from .. import bulk

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
    click.echo(
        f"Demo data written: {plural(summary.users, 'user')}, {summary.pools} pools, "
        f"{plural(summary.sessions, 'session')} ({summary.active_sessions} active), "
        f"{summary.holds} licenses granted, {plural(summary.denials, 'denial')}."
    )


@click.command()
@click.option("--user", "user", metavar="TEXT", help="Part of a user name (any case).")
@click.option(
    "--license",
    "licenses",
    metavar="PRODUCT=TYPE",
    multiple=True,
    help="Only sessions holding this license. Repeat it: several types of one product match "
    "either; several products must all match.",
)
@duration_option(
    "--idle-over",
    minimum=timedelta(0),
    help="Only sessions idle at least this long (30s, 45m, 2h, 1d, 1h30m).",
)
@click.option("--host", metavar="TEXT", help="Part of the client host name (any case).")
@click.option(
    "--source",
    metavar="NAME",
    help="Only sessions from this source: app, or a license server's --server name.",
)
@format_option
@db_option
def sessions(
    user: str | None,
    licenses: tuple[str, ...],
    idle_over: timedelta | None,
    host: str | None,
    source: str | None,
    output_format: str,
    db_url: str | None,
) -> None:
    """List active sessions, oldest last activity first.

    \b
    Examples:
      licusage sessions --license "Case Management=Concurrent User"
      licusage sessions --user smith --idle-over 2h --format json
      licusage sessions --source autodesk
    """
    license_types = parse_license_options(licenses)
    with opened_store(db_url) as engine:
        frame = queries.session_usage(
            engine,
            user=user,
            license_types=license_types,
            idle_over=idle_over,
            host=host or None,
            source=source or None,
        )
    records = usage_records(frame)
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif output_format == "csv":
        write_csv(records, [str(c) for c in frame.columns])
    else:
        products = [str(c) for c in frame.columns[len(queries.BASE_COLUMNS) :]]
        # the source only when a license server is among them (an app-only store has one)
        with_source = bool((frame["source"] != APP_SOURCE).any())
        headers = ["ID", "User", "Host", "Started", "Last Activity", "Idle"]
        headers += ["Source"] * with_source + products
        rows = [
            [
                str(r["session_id"]),
                r["user"],
                r["host"] or "",
                local_time(r["started_at"]),
                local_time(r["last_activity"]),
                durations.format_duration(r["idle"]),
                *[r["source"]] * with_source,
                *(r[p] if isinstance(r[p], str) else "" for p in products),
            ]
            for r in frame.to_dict("records")
        ]
        if rows:
            click.echo(render_table(headers, rows))
        click.echo(f"{plural(len(rows), 'active session')} (times are local)")


@click.command()
@format_option
@db_option
def pools(output_format: str, db_url: str | None) -> None:
    """Show each license pool: seats, seats in use, free seats, denials today.

    \b
    Example:
      licusage pools --format csv
    """
    with opened_store(db_url) as engine:
        frame = queries.pool_usage(engine)
    records = [
        {
            "product": r["product"],
            "license_type": r["license_type"],
            "kind": r["kind"],
            "seats": None if pd.isna(r["seats"]) else int(r["seats"]),
            "in_use": int(r["in_use"]),
            "free": None if pd.isna(r["free"]) else int(r["free"]),
            "denials_today": int(r["denials_today"]),
            "expires_at": iso_utc(r["expires_at"]),
            "counting": r["counting"],
            "reserved": int(r["reserved"]),
            "next_seats": None if pd.isna(r["next_seats"]) else int(r["next_seats"]),
            "next_seats_at": iso_utc(r["next_seats_at"]),
        }
        for r in frame.to_dict("records")
    ]
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif output_format == "csv":
        write_csv(records, list(frame.columns))
    elif not records:
        click.echo("No license pools yet (try: licusage demo).")
    else:
        headers = ["Product", "License Type", "Seats", "In Use", "Free", "Denials Today", "Expires"]
        rows = [
            [
                r["product"],
                r["license_type"],
                "unknown" if r["seats"] is None else str(r["seats"]),
                str(r["in_use"]),
                "unknown" if r["free"] is None else str(r["free"]),
                str(r["denials_today"]),
                local_time(r["expires_at"]),
            ]
            for r in records
        ]
        if any(r["next_seats"] is not None for r in records):  # a license file's increments
            headers.append("Next Seats")
            for row, r in zip(rows, records, strict=True):
                row.append(
                    ""
                    if r["next_seats"] is None
                    else f"{r['next_seats']} from {local_time(r['next_seats_at'])}"
                )
        click.echo(render_table(headers, rows))


def _describe_targets(preview: actions.LogoutPreview) -> None:
    """Print what the logout `preview` says (on stderr: stdout is the report)."""
    licenses: dict[int, list[str]] = {}
    for r in preview.held.to_dict("records"):
        licenses.setdefault(int(r["session_id"]), []).append(
            f"{describe(r['product'])} ({describe(r['license_type'])})"
        )
    servers = preview.on_servers
    if preview.active:
        click.echo(f"About to log out {plural(len(preview.active), 'session')}:", err=True)
        for r in preview.sessions.to_dict("records"):
            session_id = int(r["session_id"])
            freed = ", ".join(licenses.get(session_id, [])) or "no licenses"
            user = describe(r["user"])  # escaped: a name cannot print a line of its own
            where = f"  on server {describe(servers[session_id])}" if session_id in servers else ""
            click.echo(f"  #{session_id}  {user}  frees: {freed}{where}", err=True)
    for server in preview.without_removal:
        click.echo(
            f"  note: server {describe(server)} has no removal command: its sessions stay logged "
            "in (licusage servers set-remove-command)",
            err=True,
        )
    if preview.already_ended:
        click.echo(f"Already ended: {', '.join(map(str, preview.already_ended))}", err=True)
    if preview.unknown:
        click.echo(f"Unknown: {', '.join(map(str, preview.unknown))}", err=True)


@click.command()
@click.argument("session_ids", metavar="ID...", nargs=-1, required=True, type=SessionIdType())
@click.option(
    "--actor",
    metavar="NAME",
    help="Who logs them out (audited). Default: your OS user name, as in the dashboard on "
    "your own machine.",
)
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@db_option
def logout(session_ids: tuple[int, ...], actor: str | None, yes: bool, db_url: str | None) -> None:
    """Log sessions out by id, freeing their licenses; every logout is audited.

    Asks for confirmation on a terminal; without one, refuses unless --yes is given. Exits
    with 1 when any id is unknown (the known ones are still logged out).

    \b
    Example:
      licusage logout 12 15
      licusage logout 12 15 --actor alice.admin --yes
    """
    actor = actions.check_actor(actor if actor is not None else os_user())
    ids = sorted(set(session_ids))
    if not yes and not stdin_is_terminal():
        raise CliError("no terminal to confirm on: pass --yes to log sessions out; nothing changed")
    with opened_store(db_url) as engine:
        if not yes:  # the CLI logs out whatever it is given: nothing is spared
            preview = actions.preview_logout(engine, ids, actor, spare_own=False)
            _describe_targets(preview)
            if preview.active and not click.confirm(
                f"Log out {plural(len(preview.active), 'session')} as {actor}?", err=True
            ):
                click.echo("Cancelled: nothing changed.", err=True)
                sys.exit(1)
        result = actions.logout_sessions(engine, ids, actor)
    # the preview already said which were ended or unknown: say it once
    _report_logout(result, previewed=not yes)
    if result.unknown or result.not_removed:
        sys.exit(1)


def os_user() -> str:
    """The OS user name: who acts when no one signed in (as the dashboard on localhost)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise CliError("cannot tell your OS user name: pass --actor NAME") from None


def _report_logout(result: actions.LogoutResult, previewed: bool = False) -> None:
    """The result's summary: what ended on stdout, sessions a server kept on stderr."""
    for line in result.summary("lines", previewed=previewed).splitlines():
        click.echo(line, err=line.startswith(actions.NOT_LOGGED_OUT))


@click.command()
@duration_option(
    "--idle-over",
    required=True,
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
    with opened_store(db_url) as engine:
        result = actions.reap_idle(engine, idle_over, actor=actor, dry_run=dry_run)
        found = queries.sessions_by_id(engine, result.logged_out)
    users = dict(zip(found["session_id"].astype(int), found["user"], strict=True))
    verb = "Would end" if dry_run else "Ended"
    limit = durations.format_duration(idle_over)
    click.echo(f"{verb} {plural(len(result.logged_out), 'idle session')} (limit {limit}).")
    if result.logged_out:
        rows = [
            [str(i), str(users.get(i, "")), durations.format_duration(result.idle[i])]
            for i in result.logged_out
        ]
        click.echo(render_table(["ID", "User", "Idle"], rows))
