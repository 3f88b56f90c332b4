"""Sign-in accounts of the served dashboard: a user name, a role and a salted bcrypt hash.

Passwords are never stored: only ``bcrypt`` hashes (salt and cost inside the hash).
"""

from __future__ import annotations

import functools
from datetime import datetime

import bcrypt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import clock
from .actions import ROLES
from .db import store_operation, write
from .errors import InvalidInput
from .models import accounts_t, audit_t
from .sessions import record_audit

MAX_PASSWORD_BYTES = 72  # bcrypt only reads this many bytes; longer passwords are refused
MIN_PASSWORD_CHARS = 8
ROUNDS = 12  # bcrypt cost: 2**12 rounds, ~0.25 s per check


def _check_name(user: object) -> str:
    if not isinstance(user, str) or not user.strip() or "\x00" in user or len(user) > 200:
        raise InvalidInput(
            f"account name must be non-empty text of at most 200 characters: {user!r}"
        )
    return user.strip()


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return str(role)


def _check_password(password: object) -> bytes:
    if not isinstance(password, str):
        raise InvalidInput("password must be text")
    raw = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(raw) > MAX_PASSWORD_BYTES or "\x00" in password:
        raise InvalidInput(f"password must be at most {MAX_PASSWORD_BYTES} bytes, without NUL")
    return raw


def hash_password(password: str) -> str:
    """A salted bcrypt hash of `password` (text, starts with ``$2b$``)."""
    return bcrypt.hashpw(_check_password(password), bcrypt.gensalt(rounds=ROUNDS)).decode("ascii")


@store_operation
def add_account(
    engine: Engine, user: str, password: str, role: str, *, replace: bool = False
) -> None:
    """Create the account `user` with `role`; with `replace`, overwrite an existing one.

    Raises :class:`~licusage.errors.InvalidInput` for a bad name, role or password, or when the
    account exists and `replace` is false.
    """
    user, role = _check_name(user), _check_role(role)
    password_hash = hash_password(password)
    with write(engine) as conn:
        exists = conn.execute(
            sa.select(accounts_t.c.user_name).where(accounts_t.c.user_name == user)
        ).first()
        if exists and not replace:
            raise InvalidInput(f"account {user!r} already exists")
        if exists:
            conn.execute(
                sa.update(accounts_t)
                .where(accounts_t.c.user_name == user)
                .values(password_hash=password_hash, role=role)
            )
            # a new password signs the account out everywhere
            record_audit(conn, actor=user, action=SIGN_OUT, reason="password_changed")
        else:
            conn.execute(
                sa.insert(accounts_t).values(
                    user_name=user,
                    password_hash=password_hash,
                    role=role,
                    created_at=clock.current_db_time(),
                )
            )


@store_operation
def remove_account(engine: Engine, user: str) -> bool:
    """Delete the account `user`; False when there was none."""
    user = _check_name(user)
    with write(engine) as conn:
        result = conn.execute(sa.delete(accounts_t).where(accounts_t.c.user_name == user))
        if result.rowcount:  # should an account of that name come back, old sign-ins stay ended
            record_audit(conn, actor=user, action=SIGN_OUT, reason="account_removed")
    return bool(result.rowcount)


@store_operation
def list_accounts(engine: Engine) -> pd.DataFrame:
    """Accounts by name: ``user``, ``role``, ``created_at`` (UTC). Never the hashes."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(accounts_t.c.user_name, accounts_t.c.role, accounts_t.c.created_at).order_by(
                accounts_t.c.user_name
            )
        ).all()
    frame = pd.DataFrame(rows, columns=["user", "role", "created_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"]).dt.tz_localize("UTC")
    return frame


@store_operation
def role_of(engine: Engine, user: str | None) -> str | None:
    """The role of the account `user`, or None when there is no such account."""
    if not isinstance(user, str) or not user:
        return None
    with engine.connect() as conn:
        return conn.execute(
            sa.select(accounts_t.c.role).where(accounts_t.c.user_name == user)
        ).scalar_one_or_none()


@store_operation
def verify(engine: Engine, user: str, password: str) -> str | None:
    """The account's role if `password` is right for `user`, else None (never raises on bad
    input, so a login form can pass what it received)."""
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
        return None
    raw = password.encode("utf-8")
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(accounts_t.c.password_hash, accounts_t.c.role).where(
                accounts_t.c.user_name == user.strip()
            )
        ).first()
    if row is None or len(raw) > MAX_PASSWORD_BYTES:
        # same cost as a real check, so a wrong name is not faster than a wrong password
        bcrypt.checkpw(b"x", _dummy_hash(ROUNDS))
        return None
    if bcrypt.checkpw(raw, row.password_hash.encode("ascii")):
        return str(row.role)
    return None


@functools.cache
def _dummy_hash(rounds: int = ROUNDS) -> bytes:
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=rounds))


# --- sign-ins: recorded as audit events, which also make sign-out and lockouts hold -----------
# A sign-out (or a new password) ends every sign-in of the account made before it; failed
# sign-ins in the last window lock an account or an address out. Reading these from the audit
# trail makes them hold across server processes and hosts that share the store.
SIGN_IN, SIGN_OUT, SIGN_IN_FAILED = "sign_in", "sign_out", "sign_in_failed"


def _audit_name(user: object) -> str:
    """A name fit for the audit's actor column (what a form sent may be anything)."""
    text = user if isinstance(user, str) else repr(user)
    text = text.replace("\x00", "").strip()[:200]
    return text or "(empty)"


@store_operation
def record_sign_in(engine: Engine, user: str, *, origin: str | None = None) -> datetime:
    """Audit a successful sign-in of `user`; returns its time (store form: naive UTC), which
    the sign-in cookie carries so that a later sign-out can end it."""
    at = clock.current_db_time()
    with write(engine) as conn:
        record_audit(conn, actor=_check_name(user), action=SIGN_IN, origin=origin, at=at)
    return at


@store_operation
def record_sign_out(
    engine: Engine, user: str, *, origin: str | None = None, reason: str = "signed_out"
) -> datetime:
    """End every sign-in of `user` made until now (audited as ``sign_out``)."""
    at = clock.current_db_time()
    with write(engine) as conn:
        record_audit(
            conn, actor=_audit_name(user), action=SIGN_OUT, reason=reason, origin=origin, at=at
        )
    return at


@store_operation
def record_failed_sign_in(engine: Engine, user: object, *, origin: str | None = None) -> None:
    """Audit a refused sign-in attempt for the account name `user` from `origin`."""
    with write(engine) as conn:
        record_audit(conn, actor=_audit_name(user), action=SIGN_IN_FAILED, origin=origin)


@store_operation
def signed_out_since(engine: Engine, user: str, issued_at: datetime) -> bool:
    """Whether `user` signed out (or got a new password) at or after `issued_at`."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_t.c.id)
            .where(
                audit_t.c.actor == user,
                audit_t.c.action == SIGN_OUT,
                audit_t.c.at >= clock.current_db_time(issued_at),
            )
            .limit(1)
        ).first()
    return row is not None


@store_operation
def failed_sign_ins(
    engine: Engine, since: datetime, *, user: object = None, origin: str | None = None
) -> int:
    """How many sign-ins failed since `since`, for the account name `user` or from `origin`."""
    query = (
        sa.select(sa.func.count())
        .select_from(audit_t)
        .where(audit_t.c.action == SIGN_IN_FAILED, audit_t.c.at >= clock.current_db_time(since))
    )
    if user is not None:
        query = query.where(audit_t.c.actor == _audit_name(user))
    if origin is not None:
        query = query.where(audit_t.c.origin == origin)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
