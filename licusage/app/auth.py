"""Sign-in for the served dashboard with the store's accounts (salted bcrypt hashes).

Used by ``licusage serve --auth`` (see :func:`licusage.server.serve`), and usable as a
Bokeh/Panel auth module (then also pass ``--sign-sessions`` with ``BOKEH_SECRET_KEY``)::

    LICUSAGE_DATABASE_URL=... LICUSAGE_COOKIE_SECRET=... panel serve \\
        dashboards/session_license_usage.py --auth-module licusage/app/auth.py \\
        --cookie-secret "$LICUSAGE_COOKIE_SECRET"

How a sign-in holds (each point is checked by ``tests/browser/test_sign_in.py``):

* The sign-in cookie ``licusage_auth`` is signed (HMAC-SHA256 with the cookie secret), carries
  the account name and the time of the sign-in, is ``HttpOnly``, ``SameSite=Lax`` and, when the
  request came over TLS, ``Secure``. Every request checks it the same way
  (:func:`check_cookie`): signature, age (``max_age``, on the HTTP and the websocket path
  alike), a later sign-out of the account, and that the account still exists.
* The Bokeh session of a page learns who it serves from the checked request itself
  (:class:`SignInRequestHandler`, a Bokeh ``process_request`` hook): the result travels in the
  session token, which the server signs (``sign_sessions``), so a browser cannot forge it. The
  cookie itself is left out of the token.
* Signing out (``/logout``), a new password or removing the account ends every sign-in of the
  account made before it, on every server process and host sharing the store.
* The login form carries a CSRF token (Tornado's ``_xsrf``); ``next=`` may only name a path
  of this server; failed sign-ins lock an account and an address out for a while
  (:class:`AuthSettings`); bcrypt runs in a small thread pool, never on the event loop.

The login page is self-contained: no fonts, logos or scripts from elsewhere.
"""

from __future__ import annotations

import html
import json
import logging
import os
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bokeh.application.handlers.handler import Handler
from bokeh.server.auth_provider import AuthProvider
from tornado.ioloop import IOLoop
from tornado.web import (
    OutputTransform,
    RequestHandler,
    create_signed_value,
    decode_signed_value,
)

# absolute imports: Bokeh's --auth-module loads this file outside its package
from licusage import accounts, clock
from licusage.errors import InvalidInput, StoreUnavailable

log = logging.getLogger(__name__)

COOKIE_NAME = "licusage_auth"
PAYLOAD_KEY = "licusage_sign_in"  # what the session token carries about the checked request
ENV_COOKIE_SECRET = "LICUSAGE_COOKIE_SECRET"
DEFAULT_MAX_AGE = timedelta(hours=12)
# the cookies Panel's own providers set: cleared at sign-out, never read
_PANEL_COOKIES = ("user", "id_token", "access_token", "refresh_token", "is_guest", "next_url")


@dataclass(frozen=True)
class AuthSettings:
    """How sign-in works for one server (the same in all its processes).

    Failed sign-ins: after `account_failures` failures for one account name, or
    `address_failures` from one address, within `lockout_window`, further attempts for that
    account or from that address are refused (HTTP 429, without checking the password) until
    the failures age out of the window.
    """

    cookie_secret: str = field(repr=False)
    store_url: str | None = None
    max_age: timedelta = DEFAULT_MAX_AGE
    account_failures: int = 5
    address_failures: int = 20
    lockout_window: timedelta = timedelta(minutes=15)
    login_endpoint: str = "/login"
    logout_endpoint: str = "/logout"


_settings: AuthSettings | None = None


def configure(settings: AuthSettings) -> None:
    """Turn sign-in on for this process (and the processes it forks) with `settings`."""
    global _settings
    if not settings.cookie_secret:
        raise InvalidInput("sign-in needs a cookie secret")
    if settings.max_age <= timedelta(0):
        raise InvalidInput("the sign-in age limit must be positive")
    _settings = settings


def active_settings() -> AuthSettings | None:
    """The sign-in settings of this server, or None when it serves without sign-in."""
    return _settings


def _engine_for(url: str | None) -> Any:
    from licusage.app.main import get_engine

    return get_engine(url)


# --- the cookie -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CookieCheck:
    """What a sign-in cookie says. `user` is set whenever the signature holds (so a refusal can
    name the real account); `valid` only when the sign-in also still holds."""

    user: str | None
    issued_at: datetime | None
    valid: bool
    reason: str  # ok, missing, bad_signature, expired, signed_out, no_account, store_unavailable


def make_cookie(settings: AuthSettings, user: str, issued_at: datetime) -> str:
    """The signed value of the sign-in cookie of `user`, signed in at `issued_at` (naive UTC)."""
    payload = json.dumps({"u": user, "t": issued_at.isoformat()}, separators=(",", ":"))
    return create_signed_value(settings.cookie_secret, COOKIE_NAME, payload).decode("ascii")


def read_cookie(settings: AuthSettings, value: str | None) -> CookieCheck:
    """Check the signature and age of a sign-in cookie (not the store)."""
    if not value:
        return CookieCheck(None, None, False, "missing")
    decoded = decode_signed_value(
        settings.cookie_secret,
        COOKIE_NAME,
        value,
        max_age_days=365,  # the age is checked below, exactly, from the sign-in time
    )
    if decoded is None:
        return CookieCheck(None, None, False, "bad_signature")
    try:
        payload = json.loads(decoded)
        user, issued_at = str(payload["u"]), datetime.fromisoformat(payload["t"])
    except (ValueError, KeyError, TypeError):
        return CookieCheck(None, None, False, "bad_signature")
    age = clock.current_db_time() - issued_at
    if age > settings.max_age or age < -timedelta(minutes=5):
        return CookieCheck(user, issued_at, False, "expired")
    return CookieCheck(user, issued_at, True, "ok")


def check_cookie(settings: AuthSettings, value: str | None) -> CookieCheck:
    """:func:`read_cookie`, then the store (:func:`recheck`)."""
    check = read_cookie(settings, value)
    if not check.valid or check.user is None or check.issued_at is None:
        return check
    reason = recheck(settings, check.user, check.issued_at)
    return CookieCheck(check.user, check.issued_at, reason == "ok", reason)


def recheck(settings: AuthSettings, user: str, issued_at: datetime) -> str:
    """Does the sign-in of `user` at `issued_at` still hold? ``ok``, else why not: ``expired``,
    ``signed_out`` (a sign-out, new password or removal since), ``no_account``, or
    ``store_unavailable`` (a store that cannot be reached refuses: fails closed)."""
    age = clock.current_db_time() - issued_at
    if age > settings.max_age or age < -timedelta(minutes=5):
        return "expired"
    try:
        engine = _engine_for(settings.store_url)
        if accounts.signed_out_since(engine, user, issued_at):
            return "signed_out"
        if accounts.role_of(engine, user) is None:
            return "no_account"
    except StoreUnavailable:
        return "store_unavailable"
    return "ok"


def sign_in_required() -> bool:
    """Whether this server signs users in with the store's accounts (``serve --auth`` or this
    module loaded as ``--auth-module``): then nobody is ever anonymous."""
    return _settings is not None or _module_provider is not None


def current_settings() -> AuthSettings:
    """The settings of this server (``serve --auth``), else those of the auth module."""
    if _settings is not None:
        return _settings
    return _module_settings()


def request_sign_in(request: Any) -> dict[str, Any]:
    """What the session token says about a (Tornado) request's sign-in: ``user`` (the real
    account when the cookie's signature holds), ``issued_at``, ``valid`` and ``reason``."""
    morsel = request.cookies.get(COOKIE_NAME) if hasattr(request, "cookies") else None
    return cookie_sign_in(morsel.value if morsel is not None else None)


def cookie_sign_in(value: str | None) -> dict[str, Any]:
    """:func:`request_sign_in` for a cookie's value."""
    check = check_cookie(current_settings(), value)
    return {
        "user": check.user,
        "issued_at": check.issued_at.isoformat() if check.issued_at else None,
        "valid": check.valid,
        "reason": check.reason,
    }


class SignInRequestHandler(Handler):
    """A Bokeh application handler that adds the checked sign-in of the request that opens a
    session (page load or websocket) to the session's signed token (``process_request``)."""

    def modify_document(self, doc: Any) -> None:
        """Nothing to add to the page."""

    def process_request(self, request: Any) -> dict[str, Any]:
        return {PAYLOAD_KEY: request_sign_in(request)}


# --- redirects --------------------------------------------------------------------------------
_SAFE_PATH_CHARS = set(string.ascii_letters + string.digits + "-._~/?#[]@!$&'()*+,;=%:")


def safe_next(value: str | None, default: str = "/") -> str:
    """`value` when it is a path on this server (``/...``), else `default`.

    Refuses anything a browser could take for another origin: a scheme (``https:``,
    ``javascript:``), ``//host``, ``///host``, backslashes (``/\\host``), control characters.
    """
    if not value or not value.startswith("/") or value.startswith("//"):
        return default
    if any(char not in _SAFE_PATH_CHARS for char in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return default
    return value


# --- pages ------------------------------------------------------------------------------------
LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Session License Usage</title>
<style>
 body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
        background: #f3f5f8; color: #1d2430; }}
 header {{ background: #0072b5; color: white; padding: 14px 24px; font-size: 22px; }}
 main {{ max-width: 360px; margin: 60px auto; background: white; padding: 28px 32px;
        border-radius: 8px; box-shadow: 0 2px 10px rgba(0,0,0,.12); }}
 h1 {{ font-size: 20px; margin: 0 0 18px 0; }}
 label {{ display: block; font-size: 14px; margin: 12px 0 4px 0; }}
 input {{ width: 100%; box-sizing: border-box; padding: 8px 10px; font-size: 15px;
         border: 1px solid #b8c0cc; border-radius: 4px; }}
 button {{ margin-top: 20px; width: 100%; padding: 9px; font-size: 15px; color: white;
          background: #0072b5; border: 0; border-radius: 4px; cursor: pointer; }}
 .error {{ color: #b00020; font-size: 14px; margin-top: 12px; min-height: 1em; }}
</style></head>
<body><header>Session License Usage</header>
<main><h1>Sign in</h1>
<form action="{action}" method="post">
 {xsrf}
 <input type="hidden" name="next" value="{next}">
 <label for="username">User name</label>
 <input id="username" name="username" autocomplete="username" required autofocus>
 <label for="password">Password</label>
 <input id="password" name="password" type="password" autocomplete="current-password" required>
 <button type="submit">Sign in</button>
 <div class="error" role="alert">{error}</div>
</form></main></body></html>
"""

SIGNED_OUT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 60px auto; max-width: 360px; }}</style>
</head><body><p>You are signed out.</p><p><a href="{login}">Sign in again</a></p></body></html>
"""

WRONG_PASSWORD = "Wrong user name or password."
LOCKED_OUT = "Too many failed sign-ins. Try again later."

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def _sign_in_pool() -> ThreadPoolExecutor:
    """Two threads for bcrypt (made per process: ``--num-procs`` forks), so that a flood of
    wrong passwords can neither block the event loop nor take every core."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool, _pool_pid = ThreadPoolExecutor(2, thread_name_prefix="licusage-sign-in"), os.getpid()
    return _pool


def attempt_sign_in(
    settings: AuthSettings, user: str, password: str, origin: str | None
) -> tuple[str | None, datetime | None]:
    """Check a sign-in; (None, issued_at) on success, else (message, None). Blocking (bcrypt):
    run it off the event loop. Refused and failed attempts are audited as ``sign_in_failed``,
    except those refused by a lockout (no password checked, nothing written)."""
    engine = _engine_for(settings.store_url)
    since = clock.now() - settings.lockout_window
    if accounts.failed_sign_ins(engine, since, user=user) >= settings.account_failures or (
        origin is not None
        and accounts.failed_sign_ins(engine, since, origin=origin) >= settings.address_failures
    ):
        log.warning("sign-in of %r from %s refused: locked out", user, origin)
        return LOCKED_OUT, None
    if accounts.verify(engine, user, password) is None:
        accounts.record_failed_sign_in(engine, user, origin=origin)
        return WRONG_PASSWORD, None
    return None, accounts.record_sign_in(engine, user.strip(), origin=origin)


class _AuthPage(RequestHandler):
    """Our pages' cookies: ``HttpOnly`` (unless asked), ``SameSite=Lax``, ``Secure`` over TLS
    (as the request says: behind a trusted proxy, its ``X-Forwarded-Proto``)."""

    settings_override: AuthSettings | None = None

    @property
    def auth(self) -> AuthSettings:
        return self.settings_override or current_settings()

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("httponly", name != "_xsrf")  # the CSRF cookie is read by no script
        kwargs.setdefault("samesite", "Lax")
        kwargs.setdefault("secure", self.request.protocol == "https")
        kwargs.setdefault("path", "/")
        super().set_cookie(name, value, *args, **kwargs)

    def page(self, error: str = "", next_url: str = "/", status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.write(
            LOGIN_PAGE.format(
                action=html.escape(self.auth.login_endpoint),
                xsrf=self.xsrf_form_html(),
                next=html.escape(next_url),
                error=html.escape(error),
            )
        )


class AccountsLoginHandler(_AuthPage):
    """The login page (GET) and form (POST, with a CSRF token) checking the store's accounts."""

    def get(self) -> None:
        self.page(next_url=safe_next(self.get_argument("next", None)))

    async def post(self) -> None:
        self.check_xsrf_cookie()  # explicit: Bokeh's own handlers need no form tokens
        user = self.get_argument("username", "")
        password = self.get_argument("password", "")
        next_url = safe_next(self.get_argument("next", None))
        settings = self.auth
        try:
            error, issued_at = await IOLoop.current().run_in_executor(
                _sign_in_pool(), attempt_sign_in, settings, user, password, self.request.remote_ip
            )
        except StoreUnavailable:
            self.page("The store cannot be reached; try again later.", next_url, status=503)
            return
        if error is not None or issued_at is None:
            self.page(error or WRONG_PASSWORD, next_url, status=429 if error == LOCKED_OUT else 401)
            return
        self.set_cookie(
            COOKIE_NAME,
            make_cookie(settings, user.strip(), issued_at),
            expires_days=settings.max_age.total_seconds() / 86400,
        )
        self.redirect(next_url)


class AccountsLogoutHandler(_AuthPage):
    """Signs out: ends the account's sign-ins in the store, clears the cookies."""

    def get(self) -> None:
        settings = self.auth
        check = read_cookie(settings, self.get_cookie(COOKIE_NAME))
        if check.user is not None:
            try:
                accounts.record_sign_out(
                    _engine_for(settings.store_url), check.user, origin=self.request.remote_ip
                )
            except (StoreUnavailable, InvalidInput):
                log.error("could not record the sign-out of %r", check.user)
                self.set_status(503)
        for name in (COOKIE_NAME, *_PANEL_COOKIES):
            self.clear_cookie(name, path="/")
        self.set_header("Cache-Control", "no-store")
        self.write(SIGNED_OUT_PAGE.format(login=html.escape(settings.login_endpoint)))


class AccountsAuthProvider(AuthProvider):
    """A Bokeh auth provider: the signed sign-in cookie, checked at every request."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self._auth = settings  # before super(): Bokeh validates the handlers there
        super().__init__()

    @property
    def auth(self) -> AuthSettings:
        return self._auth or current_settings()

    @property
    def get_user(self) -> Any:
        """The account of a request (page, websocket, any handler), or None: signed in again."""

        def get_user(request_handler: Any) -> str | None:
            check = check_cookie(self.auth, request_handler.get_cookie(COOKIE_NAME))
            return check.user if check.valid else None

        return get_user

    @property
    def login_url(self) -> str:
        return self.auth.login_endpoint

    @property
    def login_handler(self) -> type[AccountsLoginHandler]:
        return type(
            "LicusageLoginHandler", (AccountsLoginHandler,), {"settings_override": self._auth}
        )

    @property
    def logout_url(self) -> str:
        return self.auth.logout_endpoint

    @property
    def logout_handler(self) -> type[AccountsLogoutHandler]:
        return type(
            "LicusageLogoutHandler", (AccountsLogoutHandler,), {"settings_override": self._auth}
        )


# --- headers ----------------------------------------------------------------------------------
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # Bokeh and Panel pages run inline scripts and build functions from text
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' blob:",  # Panel's ESM components fetch blob: modules
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class SecurityHeaders(OutputTransform):
    """Adds CSP, ``X-Frame-Options``, ``nosniff`` and a referrer policy to every response (and
    HSTS over TLS), unless a handler set its own."""

    def __init__(self, request: Any) -> None:
        self._https = getattr(request, "protocol", "http") == "https"

    def transform_first_chunk(
        self, status_code: int, headers: Any, chunk: bytes, finishing: bool
    ) -> tuple[int, Any, bytes]:
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if self._https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return status_code, headers, chunk


# --- as a module for ``panel serve --auth-module`` -----------------------------------------------
def _module_settings() -> AuthSettings:
    from panel.config import config

    secret = os.environ.get(ENV_COOKIE_SECRET) or config.cookie_secret
    if not secret:
        raise RuntimeError(f"sign-in needs a cookie secret: set {ENV_COOKIE_SECRET}")
    return AuthSettings(cookie_secret=secret)


_MODULE_NAMES = ("get_user", "login_url", "LoginHandler", "logout_url", "LogoutHandler")
_module_provider: AccountsAuthProvider | None = None


def __getattr__(name: str) -> Any:
    """The names Bokeh's ``--auth-module`` looks for (store from ``$LICUSAGE_DATABASE_URL``),
    made on first use so that importing this module registers nothing."""
    global _module_provider
    if name not in _MODULE_NAMES:
        raise AttributeError(name)
    if _module_provider is None:
        _module_provider = AccountsAuthProvider()
    return {
        "get_user": lambda: _module_provider.get_user,
        "login_url": lambda: _module_provider.login_url,
        "LoginHandler": lambda: _module_provider.login_handler,
        "logout_url": lambda: _module_provider.logout_url,
        "LogoutHandler": lambda: _module_provider.logout_handler,
    }[name]()
