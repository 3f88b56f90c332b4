"""Serving the dashboard: what ``licusage serve`` runs (and the browser tests start)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import db, demo
from .app.identity import ENV_ALLOW_REMOTE, is_loopback
from .errors import InvalidInput
from .models import sessions_t

log = logging.getLogger(__name__)
ENV_COOKIE_SECRET = "LICUSAGE_COOKIE_SECRET"
SECRET_FILE_SUFFIX = ".cookie-secret"


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
    sign_in_max_age: timedelta | None = None
    trust_proxy: bool = False


def check_options(options: ServeOptions) -> None:
    """Refuse unsafe or malformed options with :class:`~licusage.errors.InvalidInput`."""
    if not 0 <= options.port <= 65535:
        raise InvalidInput(f"port must be 0-65535, not {options.port}")
    if options.num_procs < 0:
        raise InvalidInput("num-procs must be 0 (one per CPU) or more")
    if options.sign_in_max_age is not None and options.sign_in_max_age <= timedelta(0):
        raise InvalidInput("sign-in-max-age must be positive")
    if options.cookie_secret is not None and len(options.cookie_secret) < 16:
        raise InvalidInput("cookie-secret must have at least 16 characters")
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


def secret_file(url: str) -> Path:
    """Where a generated cookie secret is kept: beside a SQLite store (``<file>.cookie-secret``),
    else in the user's data directory (one per host: several hosts need --cookie-secret)."""
    path = db.sqlite_file(url)
    if path is not None:
        return path.with_name(path.name + SECRET_FILE_SUFFIX)
    return db.default_sqlite_path().with_name("licusage" + SECRET_FILE_SUFFIX)


def cookie_secret(options: ServeOptions, url: str) -> str:
    """The secret that signs sign-in cookies and (derived from it) Bokeh session ids/tokens:
    --cookie-secret / ``$LICUSAGE_COOKIE_SECRET``, else a random one generated once and kept in
    a ``0600`` file (:func:`secret_file`), so sign-ins survive a restart. Every process of one
    server shares it (they fork from the one that reads it)."""
    given = options.cookie_secret or os.environ.get(ENV_COOKIE_SECRET)
    if given:
        return given
    path = secret_file(url)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidInput(
                f"{path} can be read by others: chmod 600 it (or remove it for a new secret)"
            ) from None
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) < 32:
            raise InvalidInput(f"{path} holds no usable secret: remove it for a new one") from None
        return secret
    secret = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secret + "\n")
    log.info("generated a cookie secret in %s", path)
    return secret


def session_secret_key(cookie_secret: str) -> bytes:
    """Bokeh's ``secret_key`` (signs session ids and tokens), derived from the cookie secret so
    that the two never coincide and both survive a restart."""
    digest = hmac.new(cookie_secret.encode("utf-8"), b"licusage bokeh sessions", hashlib.sha256)
    return digest.hexdigest().encode("ascii")


def warn_if_readable(url: str) -> None:
    """Log a warning when a SQLite store's file can be read by other local users."""
    path = db.sqlite_file(url)
    if path is not None and path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s can be read by other local users (it holds password hashes): chmod 600 it", path
        )


def _app_factory(url: str) -> Any:
    """A function Panel calls once per browser session to build its page."""

    def app() -> Any:
        from .app.main import create_app

        return create_app(url)

    return app


def _extra_routes(url: str, auth_provider: Any) -> list[Any]:
    """The HTTP API (``/api/v1/``) and ``/metrics``, beside the dashboard on the same port."""
    from .api import routes

    get_user = auth_provider.get_user if auth_provider is not None else None
    return routes(url, get_user)


def serve(options: ServeOptions, *, start: bool = True, show: bool = False) -> Any:
    """Serve the dashboard at ``/`` until stopped; returns the Bokeh server (when not started).

    Checks `options` first (see :func:`check_options`); with ``demo`` fills an empty store.
    """
    import panel as pn

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
    from panel.io.application import build_applications

    from .app import auth

    kwargs: dict[str, Any] = {
        "transforms": [auth.SecurityHeaders],  # CSP, X-Frame-Options, ... on every response
        "use_xheaders": options.trust_proxy,  # X-Forwarded-For/-Proto: only behind a proxy
    }
    secret = cookie_secret(options, url) if options.auth else options.cookie_secret
    secret = secret or secrets.token_hex(32)
    kwargs["cookie_secret"] = secret
    # signed session ids and tokens: a browser cannot forge what a session learns of its request
    kwargs["sign_sessions"] = True
    kwargs["secret_key"] = session_secret_key(secret)
    if options.auth:
        warn_if_readable(url)
        settings = auth.AuthSettings(
            cookie_secret=secret,
            store_url=url,
            max_age=options.sign_in_max_age or auth.DEFAULT_MAX_AGE,
        )
        auth.configure(settings)  # before forking: every process has it
        kwargs["auth_provider"] = auth.AccountsAuthProvider(settings)
        # the sign-in cookie never goes into the page (the session gets the checked result)
        kwargs["exclude_cookies"] = [auth.COOKIE_NAME, "_xsrf"]
        kwargs["exclude_headers"] = ["Cookie"]
    origins = list(options.websocket_origin)
    if not origins and not (options.address == "localhost" or is_loopback(options.address)):
        origins = ["*"]
    if origins:
        kwargs["websocket_origin"] = origins
    if options.num_procs != 1:
        kwargs["num_procs"] = options.num_procs
    server_id = uuid.uuid4().hex
    apps = build_applications({"/": _app_factory(url)}, title=TITLE, server_id=server_id)
    for application in apps.values():
        application.add(auth.SignInRequestHandler())
    kwargs["extra_patterns"] = _extra_routes(url, kwargs.get("auth_provider"))
    return pn.serve(
        apps,
        port=options.port,
        address=options.address,
        title=TITLE,
        show=show,
        start=start,
        server_id=server_id,
        **kwargs,
    )
