"""Sign-in accounts: salted hashes, roles, verification, and the ``licusage users`` commands."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import accounts
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.models import accounts_t


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch):
    # the cost is not what these tests check; 2**4 rounds keep them fast
    monkeypatch.setattr(accounts, "ROUNDS", 4)


def test_add_verify_and_role(engine):
    accounts.add_account(engine, "alice", "correct horse", "admin")
    accounts.add_account(engine, "vic", "viewer pass", "viewer")
    assert accounts.verify(engine, "alice", "correct horse") == "admin"
    assert accounts.verify(engine, "vic", "viewer pass") == "viewer"
    assert accounts.verify(engine, "alice", "wrong horse") is None
    assert accounts.verify(engine, "nobody", "correct horse") is None
    assert accounts.role_of(engine, "vic") == "viewer"
    assert accounts.role_of(engine, "nobody") is None
    assert list(accounts.list_accounts(engine)["user"]) == ["alice", "vic"]


def test_password_is_stored_salted_never_plain(sqlite_engine):
    accounts.add_account(sqlite_engine, "a", "same password", "viewer")
    accounts.add_account(sqlite_engine, "b", "same password", "viewer")
    with sqlite_engine.connect() as conn:
        hashes = dict(
            conn.execute(sa.select(accounts_t.c.user_name, accounts_t.c.password_hash)).all()
        )
    assert hashes["a"] != hashes["b"]  # a salt per account
    assert all(h.startswith("$2b$04$") and "same password" not in h for h in hashes.values())
    assert "password_hash" not in accounts.list_accounts(sqlite_engine).columns


@pytest.mark.parametrize(
    ("user", "password", "role"),
    [
        ("", "long enough", "admin"),
        ("x", "short", "admin"),
        ("x", "long enough", "superuser"),
        ("x", "é" * 40, "admin"),  # 80 bytes: more than bcrypt reads
        ("x\x00y", "long enough", "viewer"),
    ],
)
def test_bad_accounts_are_refused(sqlite_engine, user, password, role):
    with pytest.raises(InvalidInput):
        accounts.add_account(sqlite_engine, user, password, role)
    assert accounts.list_accounts(sqlite_engine).empty


def test_existing_account_needs_replace(sqlite_engine):
    accounts.add_account(sqlite_engine, "alice", "first password", "viewer")
    with pytest.raises(InvalidInput, match="already exists"):
        accounts.add_account(sqlite_engine, "alice", "second password", "admin")
    accounts.add_account(sqlite_engine, "alice", "second password", "admin", replace=True)
    assert accounts.verify(sqlite_engine, "alice", "first password") is None
    assert accounts.verify(sqlite_engine, "alice", "second password") == "admin"
    assert accounts.remove_account(sqlite_engine, "alice") is True
    assert accounts.remove_account(sqlite_engine, "alice") is False
    assert accounts.verify(sqlite_engine, "alice", "second password") is None


@pytest.mark.parametrize("password", ["", None, 42, "x" * 10_000])
def test_verify_never_raises_on_bad_input(sqlite_engine, password):
    accounts.add_account(sqlite_engine, "alice", "first password", "viewer")
    assert accounts.verify(sqlite_engine, "alice", password) is None


def test_users_commands(sqlite_url):
    runner = CliRunner()
    add = runner.invoke(
        main,
        ["users", "add", "alice", "--role", "admin", "--password-stdin", "--db", sqlite_url],
        input="a good password\n",
    )
    assert add.exit_code == 0, add.output
    listed = runner.invoke(main, ["users", "list", "--db", sqlite_url])
    assert listed.exit_code == 0
    assert "alice" in listed.output
    assert "admin" in listed.output
    assert "good password" not in listed.output
    prompted = runner.invoke(
        main,
        ["users", "add", "vic", "--role", "viewer", "--db", sqlite_url],
        input="viewer password\nviewer password\n",
    )
    assert prompted.exit_code == 0, prompted.output
    removed = runner.invoke(main, ["users", "remove", "vic", "--db", sqlite_url])
    assert removed.exit_code == 0
    assert "vic" not in runner.invoke(main, ["users", "list", "--db", sqlite_url]).output


@pytest.mark.parametrize(
    "args",
    [
        ["users", "add", "bob", "--role", "admin", "--password-stdin"],  # too short (stdin "x")
        ["users", "add", "bob", "--role", "root", "--password-stdin"],
        ["users", "remove", "nobody"],
        ["serve", "--address", "0.0.0.0"],
        ["serve", "--port", "70000"],
    ],
)
def test_users_and_serve_errors_exit_2_with_one_line(sqlite_url, args):
    result = CliRunner().invoke(main, [*args, "--db", sqlite_url], input="x\n")
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
