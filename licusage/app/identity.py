"""Who is using the page, and with which role: decided on the server, never by the browser.

- ``serve --auth`` (the store's accounts, :mod:`licusage.app.auth`): the account is the one the
  server checked on the request that opened the page, carried in the signed session token, and
  checked again (age, sign-out, account) at every action (:func:`sign_in_holds`). Nobody is
  ever anonymous: a page without a valid sign-in is a ``viewer`` that may not act.
- Panel's OAuth: ``pn.state.user`` names the user; the role is the account's role in the
  store, else the mapping of ``LICUSAGE_ADMIN_USERS`` / ``LICUSAGE_ADMIN_GROUPS``
  (comma-separated), else ``LICUSAGE_DEFAULT_ROLE`` (``viewer``).
- No sign-in at all: the local OS user acts as ``admin``, but only for a browser on the loopback
  interface (or when the server was started with ``--allow-unauthenticated-remote``); anyone
  else is a ``viewer``.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from .. import accounts
from ..actions import ADMIN, ROLES, VIEWER, may_logout

ENV_ADMIN_USERS = "LICUSAGE_ADMIN_USERS"
ENV_ADMIN_GROUPS = "LICUSAGE_ADMIN_GROUPS"
ENV_DEFAULT_ROLE = "LICUSAGE_DEFAULT_ROLE"
ENV_ALLOW_REMOTE = "LICUSAGE_ALLOW_UNAUTHENTICATED_REMOTE"


@dataclass(frozen=True)
class Identity:
    """The person behind a browser session: their name, role and where they connect from."""

    user: str
    role: str
    signed_in: bool
    origin: str | None = None
    # with the store's accounts: when the sign-in was made (rechecked at every action)
    issued_at: datetime | None = field(default=None, compare=False)
    # with the store's accounts but no valid sign-in: why (e.g. ``signed_out``)
    refused: str | None = None

    @property
    def may_logout(self) -> bool:
        """Whether this role may log sessions out (:func:`licusage.actions.may_logout`)."""
        return may_logout(self.role)


def _split(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def mapped_role(
    user: str, user_info: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> str:
    """The role an OAuth/SSO user without an account gets from the configured mapping."""
    env = os.environ if environ is None else environ
    if user in _split(env.get(ENV_ADMIN_USERS)):
        return ADMIN
    groups = (user_info or {}).get("groups") or (user_info or {}).get("roles") or []
    if isinstance(groups, str):
        groups = [groups]
    if _split(env.get(ENV_ADMIN_GROUPS)) & {str(g) for g in groups}:
        return ADMIN
    default = env.get(ENV_DEFAULT_ROLE, VIEWER)
    return default if default in ROLES else VIEWER


def signed_in_role(engine: Engine, user: str, user_info: Mapping[str, Any] | None = None) -> str:
    """The role of a signed-in user: their account's, else the OAuth mapping. Reads the store,
    so a role changed (or an account removed) takes effect at the next action."""
    return accounts.role_of(engine, user) or mapped_role(user, user_info)


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def anonymous_identity(remote_ip: str | None, allow_remote: bool | None = None) -> Identity:
    """A browser that is not signed in: the local OS user as admin from loopback, else viewer."""
    if allow_remote is None:
        allow_remote = os.environ.get(ENV_ALLOW_REMOTE) == "1"
    local = is_loopback(remote_ip) or allow_remote
    return Identity(
        user=getpass.getuser(), role=ADMIN if local else VIEWER, signed_in=False, origin=remote_ip
    )


UNKNOWN = "(unknown)"


def sign_in_identity(
    engine: Engine, info: Mapping[str, Any] | None, origin: str | None
) -> Identity:
    """The identity of a page under the store's accounts, from the checked sign-in `info`
    (see :func:`licusage.app.auth.request_sign_in`): never anonymous, never admin unless the
    sign-in holds and the account is an admin."""
    info = info or {}
    user = info.get("user") or UNKNOWN
    issued = info.get("issued_at")
    issued_at = datetime.fromisoformat(issued) if isinstance(issued, str) else None
    if not info.get("valid") or issued_at is None:
        reason = str(info.get("reason") or "missing")
        return Identity(user, VIEWER, signed_in=False, origin=origin, refused=reason)
    role = accounts.role_of(engine, user) or VIEWER
    return Identity(user, role, signed_in=True, origin=origin, issued_at=issued_at)


def sign_in_holds(identity: Identity) -> str:
    """``ok`` when the sign-in of `identity` (store accounts) still holds, else why not."""
    from . import auth

    if identity.refused is not None:
        return identity.refused
    if identity.issued_at is None:
        return "missing"
    return auth.recheck(auth.current_settings(), identity.user, identity.issued_at)


def current_identity(engine: Engine) -> Identity:
    """The identity of the browser session being served right now (reads ``pn.state``)."""
    import panel as pn

    from . import auth

    remote_ip = None
    context = pn.state.curdoc.session_context if pn.state.curdoc else None
    request = getattr(context, "request", None)
    if request is not None:
        remote_ip = getattr(request, "remote_ip", None)
    if auth.sign_in_required():
        from bokeh.server.contexts import BokehSessionContext

        payload: Mapping[str, Any] = {}
        if isinstance(context, BokehSessionContext):
            try:
                payload = context.token_payload
            except AssertionError:  # a session made without a token (not served)
                payload = {}
        info = payload.get(auth.PAYLOAD_KEY)
        if info is None:  # as ``--auth-module`` of panel serve: the page request's cookie
            info = auth.cookie_sign_in(pn.state.cookies.get(auth.COOKIE_NAME))
        return sign_in_identity(engine, info, remote_ip)
    user = pn.state.user
    if user == "guest":  # Panel's optional-sign-in guest: may look, never act
        return Identity(user="guest", role=VIEWER, signed_in=False, origin=remote_ip)
    if user:
        return Identity(
            user=user,
            role=signed_in_role(engine, user, pn.state.user_info),
            signed_in=True,
            origin=remote_ip,
        )
    return anonymous_identity(remote_ip)
