"""``licusage serve``: the dashboard, optionally with the idle policy running beside it."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import click

from .. import alerts, db
from .. import demo as demo_data
from ..policy import start_reaper
from ..server import ServeOptions, check_options
from ..server import serve as serve_app
from ..sources.poll import PollTarget, start_poller
from ._common import db_option, duration_option, fail, store_url, whole_option


@click.command()
@db_option
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. Not loopback? Then sign-in (--auth) is required unless "
    "--allow-unauthenticated-remote.",
)
@click.option("--demo", is_flag=True, help="Fill an empty store with demo data first.")
@whole_option(
    "--num-procs", 0, default=1, help="Server processes (0: one per CPU); they share the store."
)
@click.option("--auth", is_flag=True, help="Require sign-in with the accounts of 'licusage users'.")
@click.option(
    "--cookie-secret",
    metavar="SECRET",
    envvar="LICUSAGE_COOKIE_SECRET",
    help="Signs the sign-in cookies and session tokens; default: $LICUSAGE_COOKIE_SECRET, else "
    "one generated once and kept beside the store (a 0600 .cookie-secret file). Hosts sharing "
    "a store must share it.",
)
@duration_option(
    "--sign-in-max-age",
    minimum=timedelta(minutes=1),
    help="With --auth: how long a sign-in holds (default 12h), on every path.",
)
@click.option(
    "--trust-proxy",
    is_flag=True,
    help="Behind a reverse proxy: take the client address and https from its X-Real-Ip / "
    "X-Forwarded-For and X-Forwarded-Proto headers (only when nobody can bypass the proxy).",
)
@click.option(
    "--allow-unauthenticated-remote",
    is_flag=True,
    help="Serve a non-loopback address without sign-in: anyone who can reach it acts as admin.",
)
@click.option(
    "--allow-websocket-origin",
    "websocket_origin",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Host names browsers use to reach the server (default: any, off loopback).",
)
@duration_option(
    "--reap-every",
    help="Run the idle policy in the server this often (e.g. 5m): end sessions idle past "
    "--idle-over or their pool's own idle limit, audited as idle_timeout.",
)
@duration_option(
    "--idle-over",
    help="With --reap-every: the idle limit of sessions whose pools have none (e.g. 8h).",
)
@click.option(
    "--alerts",
    "alerts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Evaluate the alert rules of this TOML file in the server (see docs/alerts.md).",
)
@duration_option("--alerts-every", default="1m", help="With --alerts: how often to evaluate them.")
@click.option(
    "--poll",
    "polls",
    multiple=True,
    metavar="NAME=COMMAND",
    help='Poll a FlexLM or RLM server inside the server: NAME="lmutil lmstat -a -c 27000@host" '
    '(an "lmstat -i" too, for its seats and expiries) or NAME="rlmutil rlmstat -a -c 5053@host" '
    "(repeat for several; see docs/sources.md).",
)
@duration_option("--poll-every", default="1m", help="With --poll: how often to poll.")
def serve(
    db_url: str | None,
    port: int,
    address: str,
    demo: bool,
    num_procs: int,
    auth: bool,
    cookie_secret: str | None,
    sign_in_max_age: timedelta | None,
    trust_proxy: bool,
    allow_unauthenticated_remote: bool,
    websocket_origin: tuple[str, ...],
    reap_every: timedelta | None,
    idle_over: timedelta | None,
    alerts_path: Path | None,
    alerts_every: timedelta,
    polls: tuple[str, ...],
    poll_every: timedelta,
) -> None:
    """Serve the Session License Usage dashboard (Ctrl-C stops it).

    On 127.0.0.1 (the default) you act as admin without signing in. With --auth everyone
    signs in with an account of 'licusage users'.

    \b
    Examples:
      licusage serve --demo
      licusage serve --db postgresql://licusage@db/licusage --address 0.0.0.0 --auth
    """
    options = ServeOptions(
        url=store_url(db_url),
        port=port,
        address=address,
        demo=demo,
        auth=auth,
        cookie_secret=cookie_secret,
        num_procs=num_procs,
        allow_unauthenticated_remote=allow_unauthenticated_remote,
        websocket_origin=websocket_origin,
        sign_in_max_age=sign_in_max_age,
        trust_proxy=trust_proxy,
    )
    check_options(options)
    poll_targets = [PollTarget.parse(text) for text in polls]
    if idle_over is not None and reap_every is None:
        fail("--idle-over needs --reap-every (how often to apply it)")
    # everything that can fail is checked before "Serving" is announced: the store, the port
    url = db.resolve_url(options.url)
    engine = db.connect(url)  # an unusable store: one line, exit 2 (through the group)
    try:
        filled = demo and demo_data.is_empty(engine)
        summary = demo_data.generate(engine) if filled else None
    finally:
        engine.dispose()
    _check_port_free(address, port)
    click.echo(f"Store: {db.describe_url(url)}", err=True)
    if summary is not None:
        click.echo(
            f"Demo data written: {summary.users} users, {summary.sessions} sessions "
            f"({summary.active_sessions} active), {summary.denials} denials.",
            err=True,
        )
    elif demo:
        click.echo("The store already holds sessions: --demo left it as it is.", err=True)
    _log_to_console()
    where = "localhost" if address in ("127.0.0.1", "::1") else address
    click.echo(f"Serving Session License Usage at http://{where}:{port}/", err=True)
    alert_config = alerts.load_config(alerts_path) if alerts_path is not None else None
    if reap_every is not None:  # in this (parent) process: once per host, even with --num-procs
        start_reaper(url, reap_every, idle_over)
    if alert_config is not None:  # in the parent process too: once per host
        alerts.start_evaluator(url, alert_config, alerts_every)
    if poll_targets:  # in the parent process too: once per host
        start_poller(url, poll_targets, poll_every)
    try:
        serve_app(replace(options, url=url, demo=False))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        fail(_port_in_use(address, port))


def _port_in_use(address: str, port: int) -> str:
    return f"port {port} on {address} is in use (another server?): choose another with --port"


def _check_port_free(address: str, port: int) -> None:
    """Refuse a port another process listens on, before announcing anything."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                fail(_port_in_use(address, port))
            raise


def _log_to_console() -> None:
    """The server's own INFO messages (each logout: actor, counts) on stderr."""
    logger = logging.getLogger("licusage")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
