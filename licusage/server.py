"""Serving the dashboard: what ``licusage serve`` runs (and the browser tests start)."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import db, demo
from .app.identity import ENV_ALLOW_REMOTE, is_loopback
from .errors import InvalidInput
from .models import sessions_t

log = logging.getLogger(__name__)
ENV_COOKIE_SECRET = "LICUSAGE_COOKIE_SECRET"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: where, on which store, with or without sign-in."""

    url: str | None = None
    port: int = 5006
    address: str = "127.0.0.1"
    demo: bool = False
    auth: bool = False
    cookie_secret: str | None = None
    num_procs: int = 1
    allow_unauthenticated_remote: bool = False
    websocket_origin: tuple[str, ...] = ()


def check_options(options: ServeOptions) -> None:
    """Refuse unsafe or malformed options with :class:`~licusage.errors.InvalidInput`."""
    if not 0 <= options.port <= 65535:
        raise InvalidInput(f"port must be 0-65535, not {options.port}")
    if options.num_procs < 0:
        raise InvalidInput("num-procs must be 0 (one per CPU) or more")
    loopback = options.address in ("localhost",) or is_loopback(options.address)
    if not loopback and not options.auth and not options.allow_unauthenticated_remote:
        raise InvalidInput(
            f"serving on {options.address} without sign-in lets anyone on the network log "
            "sessions out: add --auth (accounts: licusage users add), or "
            "--allow-unauthenticated-remote"
        )


def fill_demo(url: str | None) -> bool:
    """Fill the store with demo data if it holds no sessions; True when it did."""
    engine = db.connect(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one()
        if count:
            log.info("the store already holds sessions; --demo leaves it as it is")
            return False
        demo.generate(engine)
        return True
    finally:
        engine.dispose()


def _app_factory(url: str) -> Any:
    """A function Panel calls once per browser session to build its page."""

    def app() -> Any:
        from .app.main import create_app

        return create_app(url)

    return app


def serve(options: ServeOptions, *, start: bool = True, show: bool = False) -> Any:
    """Serve the dashboard at ``/`` until stopped; returns the Bokeh server (when not started).

    Checks `options` first (see :func:`check_options`); with ``demo`` fills an empty store.
    """
    import panel as pn

    from .app.auth import AccountsAuthProvider
    from .app.main import TITLE

    check_options(options)
    url = db.resolve_url(options.url)
    if options.demo:
        fill_demo(url)
    else:
        db.connect(url).dispose()  # a clear error now rather than in the page
    os.environ[db.ENV_URL] = url  # the auth module and forked processes read the same store
    if options.allow_unauthenticated_remote:
        os.environ[ENV_ALLOW_REMOTE] = "1"
    kwargs: dict[str, Any] = {}
    if options.auth:
        kwargs["auth_provider"] = AccountsAuthProvider(url)
        kwargs["cookie_secret"] = (
            options.cookie_secret or os.environ.get(ENV_COOKIE_SECRET) or secrets.token_hex(32)
        )
    elif options.cookie_secret:
        kwargs["cookie_secret"] = options.cookie_secret
    origins = list(options.websocket_origin)
    if not origins and not (options.address == "localhost" or is_loopback(options.address)):
        origins = ["*"]
    if origins:
        kwargs["websocket_origin"] = origins
    if options.num_procs != 1:
        kwargs["num_procs"] = options.num_procs
    return pn.serve(
        {"/": _app_factory(url)},
        port=options.port,
        address=options.address,
        title=TITLE,
        show=show,
        start=start,
        **kwargs,
    )
