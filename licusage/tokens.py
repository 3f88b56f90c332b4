"""API tokens: what an application presents to the HTTP API (``Authorization: Bearer TOKEN``).

A token is ``lu_`` followed by 43 URL-safe characters (256 random bits from :mod:`secrets`). It
is shown once, when made; the store keeps only its SHA-256 (hex). A fast unsalted hash is
enough for random tokens of that length (nobody can guess one, and the hash cannot be reversed
to one), and it lets each request be checked by one indexed lookup instead of a bcrypt
round per request. Tokens are revoked, never deleted, so the audit keeps naming them.

Scopes (one per token):

* ``sessions:write``: check licenses out, heartbeat and check in (what a licensed application
  needs);
* ``read``: read sessions, pools and the audit log;
* ``admin``: everything, including logging sessions out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import clock, validation
from .db import store_operation, write
from .errors import InvalidInput
from .models import api_tokens_t

SESSIONS_WRITE = "sessions:write"
READ = "read"
ADMIN = "admin"
SCOPES = (SESSIONS_WRITE, READ, ADMIN)
PREFIX = "lu_"
MAX_NAME_LENGTH = 190  # leaves room for the actor's "token:" prefix

# what each scope allows: a scope allows itself; admin allows everything
_GRANTS = {SESSIONS_WRITE: {SESSIONS_WRITE}, READ: {READ}, ADMIN: set(SCOPES)}


@dataclass(frozen=True)
class TokenInfo:
    """A token as the API sees it: who presents it (`name`) and what it may do."""

    id: int
    name: str
    scope: str

    def allows(self, needed: str) -> bool:
        """Whether this token's scope allows an operation needing scope `needed`."""
        return allows(self.scope, needed)


def allows(scope: str, needed: str) -> bool:
    """Whether `scope` allows an operation needing `needed` (``admin`` allows all)."""
    return needed in _GRANTS.get(scope, set())


def hash_token(token: str) -> str:
    """The SHA-256 (hex) the store keeps of `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: object) -> str:
    """`name` trimmed if it can name a token: the rules of user names (it is the actor
    ``token:NAME`` of what the token does; see :mod:`licusage.validation`)."""
    name = validation.check_user(name, "token name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"token name is at most {MAX_NAME_LENGTH} characters long")
    return name


def check_scope(scope: object) -> str:
    """`scope` if it is one of :data:`SCOPES`."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return str(scope)


@store_operation
def add_token(engine: Engine, name: str, scope: str) -> str:
    """Make a token named `name` with `scope` and return it: the only time it is seen.

    Raises :class:`~licusage.errors.InvalidInput` for a bad name or scope, or when a token of
    that name is already in use (revoke it first).
    """
    name, scope = check_name(name), check_scope(scope)
    token = PREFIX + secrets.token_urlsafe(32)
    with write(engine) as conn:
        taken = conn.execute(
            sa.select(api_tokens_t.c.id).where(
                api_tokens_t.c.name == name, api_tokens_t.c.revoked_at.is_(None)
            )
        ).first()
        if taken:
            raise InvalidInput(f"a token named {name!r} is in use: revoke it first")
        conn.execute(
            sa.insert(api_tokens_t).values(
                name=name,
                scope=scope,
                token_hash=hash_token(token),
                created_at=clock.current_db_time(),
            )
        )
    return token


@store_operation
def list_tokens(engine: Engine, include_revoked: bool = False) -> pd.DataFrame:
    """Tokens by name: ``id``, ``name``, ``scope``, ``created_at``, ``revoked_at`` (UTC;
    missing while in use). Never the tokens or their hashes."""
    t = api_tokens_t
    query = sa.select(t.c.id, t.c.name, t.c.scope, t.c.created_at, t.c.revoked_at).order_by(
        t.c.name, t.c.id
    )
    if not include_revoked:
        query = query.where(t.c.revoked_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["id", "name", "scope", "created_at", "revoked_at"])
    frame["id"] = frame["id"].astype("int64")
    for column in ("created_at", "revoked_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]").dt.tz_localize("UTC")
    return frame


@store_operation
def revoke_token(engine: Engine, name: str) -> bool:
    """Revoke the token in use named `name`: the API refuses it from now on. False when no
    token of that name is in use."""
    name = check_name(name)
    with write(engine) as conn:
        result = conn.execute(
            sa.update(api_tokens_t)
            .where(api_tokens_t.c.name == name, api_tokens_t.c.revoked_at.is_(None))
            .values(revoked_at=clock.current_db_time())
        )
    return bool(result.rowcount)


@store_operation
def verify_token(engine: Engine, token: object) -> TokenInfo | None:
    """The token in use that `token` is, or None (unknown, revoked, or not a token at all)."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    t = api_tokens_t
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.id, t.c.name, t.c.scope, t.c.token_hash, t.c.revoked_at).where(
                t.c.token_hash == digest
            )
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):  # the index found it; be exact anyway
        return None
    return TokenInfo(id=int(row.id), name=str(row.name), scope=str(row.scope))
