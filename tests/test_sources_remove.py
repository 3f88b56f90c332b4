"""Logout reaches the license server: the server's own removal command, run per checkout.

The removal commands here are real programs (small Python scripts written by the test) that
stand where ``lmutil lmremove`` would: they record their arguments, fail, or hang."""

from __future__ import annotations

import json
import shlex
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import actions, catalog, queries, sessions
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.models import audit_t, sessions_t
from licusage.sources import remove
from licusage.sources.lmstat import import_lmstat, read_text
from tests.test_hostile import store_checksum
from tests.test_sources_lmstat import FIXTURES

RECORD = """import json, sys
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(json.dumps(sys.argv[2:]) + "\\n")
"""
REFUSE = "import sys; print('lmremove: not authorized', file=sys.stderr); sys.exit(3)"
HANG = "import time; time.sleep(60)"


def _server_sessions(engine) -> dict[str, int]:
    path = FIXTURES / "lmstat-1.txt"  # ana (solver 101, mesher 104) and bo (solver 202, 203)
    import_lmstat(engine, read_text(str(path)), server="lic1", source=str(path))
    usage = queries.session_usage(engine)
    return dict(zip(usage["user"], usage["session_id"].astype(int), strict=True))


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"


def test_logout_runs_the_removal_per_checkout_then_ends_the_session(engine, tmp_path):
    ids = _server_sessions(engine)
    calls = tmp_path / "calls.jsonl"
    command = _script(tmp_path, "record.py", RECORD)
    remove.set_remove_command(
        engine,
        "lic1",
        f"{command} {shlex.quote(str(calls))} -h {{feature}} {{handle_host}} {{handle_port}} "
        "{handle_id} {user}",
    )
    result = actions.logout_sessions(engine, [ids["ana"]], "ada.admin")
    assert result.logged_out == (ids["ana"],)
    assert result.not_removed == {}
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert sorted(runs) == [
        ["-h", "mesher", "lic1", "27000", "104", "ana"],
        ["-h", "solver", "lic1", "27000", "101", "ana"],
    ]
    assert list(queries.session_usage(engine)["user"]) == ["bo"]
    # a snapshot still listing ana's checkouts (the server had not let go) starts a new session
    # rather than reviving the ended one, which keeps its end
    path = FIXTURES / "lmstat-1.txt"
    import_lmstat(engine, read_text(str(path)), server="lic1", source=str(path))
    again = queries.session_usage(engine, user="ana")
    assert len(again) == 1
    assert int(again["session_id"].item()) != ids["ana"]
    with engine.connect() as conn:
        ended = conn.execute(
            sa.select(sessions_t.c.ended_by, sessions_t.c.end_reason).where(
                sessions_t.c.id == ids["ana"]
            )
        ).one()
    assert tuple(ended) == ("ada.admin", "admin_logout")


def test_a_failed_removal_keeps_the_session_says_why_and_is_audited(engine, tmp_path):
    ids = _server_sessions(engine)
    remove.set_remove_command(engine, "lic1", _script(tmp_path, "refuse.py", REFUSE) + " {feature}")
    before = len(queries.session_usage(engine))
    result = actions.logout_sessions(engine, [ids["bo"]], "ada.admin")
    assert result.logged_out == ()
    assert list(result.not_removed) == [ids["bo"]]
    assert "failed (exit 3): lmremove: not authorized" in result.not_removed[ids["bo"]]
    assert len(queries.session_usage(engine)) == before
    with engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit_t.c.actor, audit_t.c.session_id).where(
                audit_t.c.action == "logout_failed"
            )
        ).all()
    assert audited == [("ada.admin", ids["bo"])]


def test_a_server_without_a_removal_command_refuses_and_app_sessions_still_end(
    sqlite_engine, tmp_path
):
    ids = _server_sessions(sqlite_engine)
    catalog.add_pool(sqlite_engine, "Case Management", catalog.CONCURRENT_USER, 5)
    carla = sessions.login(sqlite_engine, "carla", {"Case Management": catalog.CONCURRENT_USER})
    wanted = [ids["ana"], ids["bo"], carla.session_id]
    result = actions.logout_sessions(sqlite_engine, wanted, "ada.admin")
    assert result.logged_out == (carla.session_id,)
    assert set(result.not_removed) == {ids["ana"], ids["bo"]}
    assert all("no removal command" in why for why in result.not_removed.values())


def test_a_hanging_removal_is_stopped_and_counts_as_failed(sqlite_engine, tmp_path):
    ids = _server_sessions(sqlite_engine)
    remove.set_remove_command(sqlite_engine, "lic1", _script(tmp_path, "hang.py", HANG))
    failed = remove.remove_on_servers(sqlite_engine, [ids["ana"]], timeout=0.5)
    assert "did not finish within 0.5 s" in failed[ids["ana"]]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "empty"),
        ("lmremove 'unclosed", "does not parse"),
        ("lmremove {password}", "unknown placeholder {password}"),
        ("lmremove {feature", "bad placeholder"),
    ],
)
def test_bad_removal_commands_are_refused(sqlite_engine, template, message):
    _server_sessions(sqlite_engine)
    with pytest.raises(InvalidInput, match=message):
        remove.set_remove_command(sqlite_engine, "lic1", template)


def test_cli_sets_lists_and_refuses(sqlite_engine, sqlite_url, tmp_path):
    ids = _server_sessions(sqlite_engine)
    runner = CliRunner()
    # no removal command yet: the logout refuses, and says why
    out = runner.invoke(
        main, ["logout", str(ids["bo"]), "--yes", "--actor", "ada.admin", "--db", sqlite_url]
    )
    assert out.exit_code == 1, out.output
    assert "server 'lic1' has no removal command" in out.stderr
    template = "lmutil lmremove -c 27000@lic1 -h {feature} {handle_host} {handle_port} {handle_id}"
    done = runner.invoke(
        main, ["servers", "set-remove-command", "lic1", template, "--db", sqlite_url]
    )
    assert done.exit_code == 0, done.output
    listed = runner.invoke(main, ["servers", "list", "--db", sqlite_url])
    assert "lic1" in listed.stdout
    assert "flexlm" in listed.stdout
    assert "lmremove" in listed.stdout
    before = store_checksum(sqlite_engine)
    for args, message in [
        (["set-remove-command", "nope", "x"], "no license server named 'nope'"),
        (["set-remove-command", "lic1", "x {pwd}"], "unknown placeholder {pwd}"),
        (["set-remove-command", "lic1"], "give TEMPLATE, or --clear"),
    ]:
        bad = runner.invoke(main, ["servers", *args, "--db", sqlite_url])
        assert bad.exit_code == 2, bad.output
        assert len(bad.stderr.strip().splitlines()) == 1
        assert message in bad.stderr
    assert store_checksum(sqlite_engine) == before
    # a removal that fails: exit 1, the reason on stderr, the session still active
    runner.invoke(
        main,
        [
            "servers",
            "set-remove-command",
            "lic1",
            _script(tmp_path, "r.py", REFUSE),
            "--db",
            sqlite_url,
        ],
    )
    out = runner.invoke(
        main, ["logout", str(ids["bo"]), "--yes", "--actor", "ada.admin", "--db", sqlite_url]
    )
    assert out.exit_code == 1, out.output
    assert f"Not logged out: {ids['bo']}: " in out.stderr
    assert "not authorized" in out.stderr
    assert ids["bo"] in set(queries.session_usage(sqlite_engine)["session_id"])
