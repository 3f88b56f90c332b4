"""API tokens: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from licusage import tokens
from licusage.errors import InvalidInput
from licusage.models import api_tokens_t


def test_a_token_is_shown_once_and_only_its_hash_is_stored(engine):
    token = tokens.add_token(engine, "case-app", tokens.SESSIONS_WRITE)
    assert token.startswith("lu_")
    assert len(token) >= 40
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_tokens_t)).one()._mapping
    assert token not in {str(v) for v in stored.values()}
    assert stored["token_hash"] == tokens.hash_token(token)
    info = tokens.verify_token(engine, token)
    assert info == tokens.TokenInfo(id=stored["id"], name="case-app", scope="sessions:write")
    listed = tokens.list_tokens(engine)
    assert list(listed.columns) == ["id", "name", "scope", "created_at", "revoked_at"]
    assert listed["name"].tolist() == ["case-app"]


def test_tokens_are_random_and_unknown_ones_are_refused(engine):
    first = tokens.add_token(engine, "a", tokens.READ)
    second = tokens.add_token(engine, "b", tokens.READ)
    assert first != second
    for bad in (first[:-1], first + "x", "", None, 42, "Bearer " + first, "lu_" + "x" * 300):
        assert tokens.verify_token(engine, bad) is None


def test_revoked_tokens_are_refused_and_kept(engine):
    token = tokens.add_token(engine, "reports", tokens.READ)
    assert tokens.revoke_token(engine, "reports") is True
    assert tokens.verify_token(engine, token) is None
    assert tokens.revoke_token(engine, "reports") is False
    assert tokens.list_tokens(engine).empty
    kept = tokens.list_tokens(engine, include_revoked=True)
    assert kept["name"].tolist() == ["reports"]
    assert kept["revoked_at"].notna().all()
    # the name is free again once revoked
    again = tokens.add_token(engine, "reports", tokens.ADMIN)
    assert tokens.verify_token(engine, again).scope == "admin"


def test_bad_names_and_scopes_and_duplicates_are_refused(engine):
    tokens.add_token(engine, "app", tokens.READ)
    with pytest.raises(InvalidInput, match="in use"):
        tokens.add_token(engine, " app ", tokens.READ)
    for name in ("", "  ", "a\x00b", "x" * 201, None):
        with pytest.raises(InvalidInput, match="token name"):
            tokens.add_token(engine, name, tokens.READ)  # type: ignore[arg-type]
    for scope in ("write", "", "ADMIN", None):
        with pytest.raises(InvalidInput, match="scope must be one of"):
            tokens.add_token(engine, "other", scope)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "needed", "allowed"),
    [
        ("sessions:write", "sessions:write", True),
        ("sessions:write", "read", False),
        ("sessions:write", "admin", False),
        ("read", "read", True),
        ("read", "sessions:write", False),
        ("read", "admin", False),
        ("admin", "sessions:write", True),
        ("admin", "read", True),
        ("admin", "admin", True),
    ],
)
def test_scopes(scope, needed, allowed):
    assert tokens.allows(scope, needed) is allowed
