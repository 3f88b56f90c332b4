"""Who is using the page, and with which role: decided on the server, never by the browser.

- Signed in (accounts, Panel basic/OAuth auth): ``pn.state.user`` names the user; the role is
  the account's role in the store, else the OAuth mapping of ``LICUSAGE_ADMIN_USERS`` /
  ``LICUSAGE_ADMIN_GROUPS`` (comma-separated), else ``LICUSAGE_DEFAULT_ROLE`` (``viewer``).
- Not signed in: the local OS user acts as ``admin``, but only for a browser on the loopback
  interface (or when the server was started with ``--allow-unauthenticated-remote``); anyone
  else is a ``viewer``.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from .. import accounts
from ..actions import ADMIN, ROLES, VIEWER

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

    @property
    def may_logout(self) -> bool:
        return self.role == ADMIN


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


def current_identity(engine: Engine) -> Identity:
    """The identity of the browser session being served right now (reads ``pn.state``)."""
    import panel as pn

    remote_ip = None
    context = pn.state.curdoc.session_context if pn.state.curdoc else None
    request = getattr(context, "request", None)
    if request is not None:
        remote_ip = getattr(request, "remote_ip", None)
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
