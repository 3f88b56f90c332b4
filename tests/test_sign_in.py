"""Sign-in rules in process (issue 14): the cookie check, sign-out, lockouts, redirects, the
identity of a page, and the files that hold secrets. The served versions of these attacks are in
``tests/browser/test_sign_in.py``."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest
from tornado.web import create_signed_value

from licusage import accounts, catalog, clock, db, queries, sessions
from licusage.app import auth
from licusage.app.identity import sign_in_identity
from licusage.app.main import create_app
from licusage.errors import InvalidInput
from licusage.server import ServeOptions, cookie_secret, secret_file, session_secret_key

SECRET = "unit-test-cookie-secret-0123456789"


@pytest.fixture
def settings(sqlite_url, sqlite_engine) -> auth.AuthSettings:
    accounts.add_account(sqlite_engine, "ada", "admin-pass-1", "admin")
    accounts.add_account(sqlite_engine, "vic", "viewer-pass-1", "viewer")
    return auth.AuthSettings(
        cookie_secret=SECRET, store_url=sqlite_url, account_failures=3, address_failures=5
    )


def fresh_cookie(settings: auth.AuthSettings, user: str, engine) -> str:
    return auth.make_cookie(settings, user, accounts.record_sign_in(engine, user))


@pytest.mark.parametrize(
    "value",
    [
        "///evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/%0d%0aSet-Cookie:x=1\r\n",
        "",
        None,
    ],
)
def test_next_must_be_a_path_of_this_server(value):
    assert auth.safe_next(value) == "/"


@pytest.mark.parametrize("value", ["/", "/?user=smith", "/login?next=%2F", "/a/b#c"])
def test_next_keeps_paths_of_this_server(value):
    assert auth.safe_next(value) == value


def test_a_fresh_cookie_holds(settings, sqlite_engine):
    check = auth.check_cookie(settings, fresh_cookie(settings, "vic", sqlite_engine))
    assert (check.user, check.valid, check.reason) == ("vic", True, "ok")


def test_a_cookie_signed_with_another_secret_is_refused(settings, sqlite_engine):
    other = auth.AuthSettings(cookie_secret="another-secret-0123456789abcdef")
    forged = auth.make_cookie(other, "ada", accounts.record_sign_in(sqlite_engine, "ada"))
    check = auth.check_cookie(settings, forged)
    assert (check.user, check.valid, check.reason) == (None, False, "bad_signature")
    assert auth.check_cookie(settings, None).reason == "missing"
    assert auth.check_cookie(settings, "ada").reason == "bad_signature"


def test_a_stale_cookie_is_refused(settings, sqlite_engine):
    old = clock.current_db_time() - settings.max_age - timedelta(seconds=1)
    check = auth.check_cookie(settings, auth.make_cookie(settings, "ada", old))
    assert (check.user, check.valid, check.reason) == ("ada", False, "expired")
    # Tornado's own timestamp inside the signed value is not what counts: the sign-in time is
    payload = json.dumps({"u": "ada", "t": old.isoformat()})
    value = create_signed_value(SECRET, auth.COOKIE_NAME, payload).decode()
    assert auth.check_cookie(settings, value).reason == "expired"


def test_sign_out_new_password_and_removal_end_earlier_sign_ins(settings, sqlite_engine):
    before = fresh_cookie(settings, "vic", sqlite_engine)
    accounts.record_sign_out(sqlite_engine, "vic")
    assert auth.check_cookie(settings, before).reason == "signed_out"
    after = fresh_cookie(settings, "vic", sqlite_engine)
    assert auth.check_cookie(settings, after).valid
    accounts.add_account(sqlite_engine, "vic", "a-new-password", "viewer", replace=True)
    assert auth.check_cookie(settings, after).reason == "signed_out"
    again = fresh_cookie(settings, "vic", sqlite_engine)
    accounts.remove_account(sqlite_engine, "vic")
    assert auth.check_cookie(settings, again).reason in {"signed_out", "no_account"}
    accounts.add_account(sqlite_engine, "vic", "viewer-pass-1", "admin")  # back, as admin
    assert not auth.check_cookie(settings, again).valid  # the old sign-in stays ended


def test_failed_sign_ins_lock_the_account_out(settings, sqlite_engine):
    for _ in range(settings.account_failures):
        assert auth.attempt_sign_in(settings, "ada", "wrong", "10.0.0.1") == (
            auth.WRONG_PASSWORD,
            None,
        )
    # locked: even the right password, from another address, is refused, without bcrypt
    assert auth.attempt_sign_in(settings, "ada", "admin-pass-1", "10.0.0.2") == (
        auth.LOCKED_OUT,
        None,
    )
    assert auth.attempt_sign_in(settings, "vic", "viewer-pass-1", "10.0.0.2")[0] is None
    failed = queries.audit_log(sqlite_engine, actor="ada")
    assert list(failed["action"]).count(accounts.SIGN_IN_FAILED) == settings.account_failures
    assert set(failed.loc[failed["action"] == accounts.SIGN_IN_FAILED, "origin"]) == {"10.0.0.1"}


def test_failed_sign_ins_lock_the_address_out(settings, sqlite_engine):
    for n in range(settings.address_failures):
        assert auth.attempt_sign_in(settings, f"guess{n}", "wrong", "10.9.9.9")[0] is not None
    assert auth.attempt_sign_in(settings, "vic", "viewer-pass-1", "10.9.9.9")[0] == auth.LOCKED_OUT
    assert auth.attempt_sign_in(settings, "vic", "viewer-pass-1", "10.9.9.8")[0] is None


def test_the_lockout_ends_with_its_window(settings, sqlite_engine, monkeypatch):
    for _ in range(settings.account_failures):
        auth.attempt_sign_in(settings, "ada", "wrong", "10.0.0.1")
    assert auth.attempt_sign_in(settings, "ada", "admin-pass-1", "10.0.0.1")[0] == auth.LOCKED_OUT
    later = clock.now() + settings.lockout_window + timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert auth.attempt_sign_in(settings, "ada", "admin-pass-1", "10.0.0.1")[0] is None


@pytest.mark.parametrize(
    "info",
    [
        None,
        {},
        {"user": "ada", "valid": False, "reason": "bad_signature"},
        {"user": "ada", "issued_at": None, "valid": True},
        {"user": "ada", "issued_at": "2026-01-01T00:00:00", "valid": False, "reason": "expired"},
    ],
)
def test_a_page_without_a_valid_sign_in_is_never_admin(settings, sqlite_engine, info):
    who = sign_in_identity(sqlite_engine, info, "127.0.0.1")  # even from loopback
    assert who.role == "viewer"
    assert not who.may_logout
    assert not who.signed_in


def test_a_page_whose_sign_in_ended_may_not_act_and_is_audited(
    settings, sqlite_engine, monkeypatch
):
    """A page opened by an admin who then signed out (or whose sign-in grew too old): its
    Logout is refused and audited under the admin's own name, with why."""
    monkeypatch.setattr(auth, "_settings", settings)  # as serve --auth does, for this test only
    catalog.add_pool(sqlite_engine, "Case Management", catalog.CONCURRENT_USER, 5)
    target = sessions.login(sqlite_engine, "u1", {"Case Management": "Concurrent User"})
    issued = accounts.record_sign_in(sqlite_engine, "ada")
    info = {"user": "ada", "issued_at": issued.isoformat(), "valid": True, "reason": "ok"}
    who = sign_in_identity(sqlite_engine, info, "10.1.1.1")
    assert who.role == "admin"
    explorer = create_app(sqlite_engine, identity=who).explorer
    accounts.record_sign_out(sqlite_engine, "ada")
    assert explorer.logout([target.session_id]) is None
    assert "may not log sessions out" in explorer.last_error
    refused = queries.audit_log(sqlite_engine, actor="ada")
    refused = refused[refused["action"] == "logout_refused"]
    assert len(refused) == 1
    assert json.loads(refused["detail"].iloc[0])["role"] == "signed_out"
    assert refused["origin"].iloc[0] == "10.1.1.1"
    assert len(queries.session_usage(sqlite_engine)) == 1  # still active

    stale = clock.current_db_time() - settings.max_age - timedelta(minutes=1)
    info = {"user": "ada", "issued_at": stale.isoformat(), "valid": True, "reason": "ok"}
    explorer = create_app(sqlite_engine, identity=sign_in_identity(sqlite_engine, info, None))
    assert explorer.explorer.logout([target.session_id]) is None
    refused = queries.audit_log(sqlite_engine, actor="ada")
    roles = [
        json.loads(d)["role"] for d in refused.loc[refused["action"] == "logout_refused", "detail"]
    ]
    assert sorted(roles) == ["expired", "signed_out"]


def test_a_new_sqlite_store_is_private(tmp_path):
    path = tmp_path / "store.sqlite"
    db.connect(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in tmp_path.glob("store.sqlite-*"):  # WAL and shared memory, when left
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0


def test_the_generated_cookie_secret_is_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("LICUSAGE_COOKIE_SECRET", raising=False)
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    first = cookie_secret(ServeOptions(url=url), url)
    path = secret_file(url)
    assert path == tmp_path / "store.sqlite.cookie-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cookie_secret(ServeOptions(url=url), url) == first  # a restart signs the same
    assert len(first) >= 32
    assert cookie_secret(ServeOptions(url=url, cookie_secret="given-secret-0123456789"), url) == (
        "given-secret-0123456789"
    )
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInput, match="chmod 600"):
        cookie_secret(ServeOptions(url=url), url)
    # the Bokeh session key is derived, not the cookie secret itself
    assert session_secret_key(first) != first.encode()
    assert session_secret_key(first) == session_secret_key(first)
