"""``licusage tokens`` and ``licusage alerts``: thin commands over licusage.tokens / alerts."""

from __future__ import annotations

from click.testing import CliRunner

from licusage import alerts, catalog, db, sessions, tokens
from licusage.cli import main

CM, CU = "Case Management", catalog.CONCURRENT_USER


def test_tokens_add_shows_the_token_once_list_and_revoke(sqlite_url):
    runner = CliRunner()
    added = runner.invoke(
        main, ["tokens", "add", "case-app", "--scope", "sessions:write", "--db", sqlite_url]
    )
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    engine = db.connect(sqlite_url)
    try:
        assert tokens.verify_token(engine, token).name == "case-app"
        listed = runner.invoke(main, ["tokens", "list", "--db", sqlite_url])
        assert "case-app" in listed.output
        assert "sessions:write" in listed.output
        assert token not in listed.output
        again = runner.invoke(
            main, ["tokens", "add", "case-app", "--scope", "read", "--db", sqlite_url]
        )
        assert again.exit_code == 2
        assert "in use" in again.output
        bad = runner.invoke(main, ["tokens", "add", "x", "--scope", "write", "--db", sqlite_url])
        assert bad.exit_code == 2
        revoked = runner.invoke(main, ["tokens", "revoke", "case-app", "--db", sqlite_url])
        assert revoked.exit_code == 0
        assert tokens.verify_token(engine, token) is None
        gone = runner.invoke(main, ["tokens", "revoke", "case-app", "--db", sqlite_url])
        assert gone.exit_code == 2
        assert "Traceback" not in gone.output
        assert (
            "case-app"
            in runner.invoke(main, ["tokens", "list", "--all", "--db", sqlite_url]).output
        )
    finally:
        engine.dispose()


def test_alerts_check_records_and_lists(sqlite_url, tmp_path, frozen):
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nname = "full"\nkind = "pool_usage"\nabove_percent = 50\n')
    engine = db.connect(sqlite_url)
    try:
        catalog.add_pool(engine, CM, CU, 1)
        sessions.login(engine, "a", {CM: CU})
    finally:
        engine.dispose()
    runner = CliRunner()
    checked = runner.invoke(main, ["alerts", "check", "--rules", str(rules), "--db", sqlite_url])
    assert checked.exit_code == 0, checked.output
    assert "FIRED   full: Case Management=Concurrent User" in checked.output
    assert (
        "No change."
        in runner.invoke(
            main, ["alerts", "check", "--rules", str(rules), "--db", sqlite_url]
        ).output
    )
    listed = runner.invoke(main, ["alerts", "list", "--open", "--db", sqlite_url])
    assert "full" in listed.output
    assert "open" in listed.output
    engine = db.connect(sqlite_url)
    try:
        assert len(alerts.firings(engine)) == 1
    finally:
        engine.dispose()
    rules.write_text('[[rule]]\nkind = "pool_usage"\nabove_percent = 500\n')
    bad = runner.invoke(main, ["alerts", "check", "--rules", str(rules), "--db", sqlite_url])
    assert bad.exit_code == 2
    assert len(bad.output.strip().splitlines()) == 1
    missing = runner.invoke(
        main, ["alerts", "check", "--rules", str(tmp_path / "no.toml"), "--db", sqlite_url]
    )
    assert missing.exit_code == 2
