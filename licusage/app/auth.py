"""Sign-in for the served dashboard with the store's accounts (salted bcrypt hashes).

Used by ``licusage serve --auth`` (:class:`AccountsAuthProvider`), and usable as a Bokeh/Panel
auth module::

    LICUSAGE_DATABASE_URL=... panel serve dashboards/session_license_usage.py \\
        --auth-module licusage/app/auth.py --cookie-secret "$(openssl rand -hex 32)"

The login page is self-contained: no fonts, logos or scripts from elsewhere.
"""

from __future__ import annotations

import html
from typing import Any

from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url
from panel.config import config
from panel.io.state import state
from tornado.web import RequestHandler

# absolute imports: Bokeh's --auth-module loads this file outside its package
from licusage import accounts
from licusage.errors import StoreUnavailable

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


def _engine_for(url: str | None) -> Any:
    from licusage.app.main import get_engine

    return get_engine(url)


class AccountsLoginHandler(BasicLoginHandler):
    """Panel's login handler, checking the store's accounts and drawing a local page."""

    store_url: str | None = None

    def get(self) -> None:
        error = self.get_argument("error", "")
        next_url = _validate_next_url(self.get_argument("next", state.base_url))
        if next_url:
            self.set_cookie("next_url", next_url)
        self.write(LOGIN_PAGE.format(action=self._login_endpoint, error=html.escape(error)))

    def _validate(self, username: str, password: str) -> bool:
        try:
            return accounts.verify(_engine_for(self.store_url), username, password) is not None
        except StoreUnavailable:
            return False


class AccountsLogoutHandler(RequestHandler):
    """Clears the sign-in cookies and shows a local "signed out" page."""

    login_endpoint = "/login"

    def get(self) -> None:
        for name in ("user", "id_token", "access_token", "refresh_token", "is_guest"):
            self.clear_cookie(name, path=config.cookie_path)
        self.write(SIGNED_OUT_PAGE.format(login=html.escape(self.login_endpoint)))


class AccountsAuthProvider(BasicAuthProvider):
    """A Bokeh auth provider signing users in with :func:`licusage.accounts.verify`."""

    def __init__(self, store_url: str | None = None, **kwargs: Any) -> None:
        self.store_url = store_url  # before super(): Bokeh validates the handlers there
        super().__init__(**kwargs)

    @property
    def get_user(self) -> Any:
        """Panel's cookie check, then the account must still exist (removal signs out)."""
        cookie_user = super().get_user

        def get_user(request_handler: Any) -> str | None:
            user = cookie_user(request_handler)
            if not user or user == "guest":
                return user
            try:
                known = accounts.role_of(_engine_for(self.store_url), user) is not None
            except StoreUnavailable:
                known = True  # the page reports the outage; the role is checked at every action
            return user if known else None

        return get_user

    @property
    def login_handler(self) -> type[AccountsLoginHandler]:
        return type(
            "LicusageLoginHandler",
            (AccountsLoginHandler,),
            {"store_url": self.store_url, "_login_endpoint": self._login_endpoint},
        )

    @property
    def logout_handler(self) -> type[AccountsLogoutHandler]:
        return type(
            "LicusageLogoutHandler",
            (AccountsLogoutHandler,),
            {"login_endpoint": self._login_endpoint},
        )


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
