"""The command line, through click's CliRunner (and a real terminal for the confirmation)."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import catalog, db, demo, durations, queries, sessions
from licusage.cli import main, parse_license_options
from licusage.errors import InvalidInput
from licusage.models import audit_t, holds_t, sessions_t

CM = "Case Management"
CONC = "Concurrent User"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def run(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), input=input)


def one_error_line(result) -> str:
    """The single stderr line of a refused command."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def snapshot(url: str) -> tuple:
    engine = db.connect(url)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
                for t in (sessions_t, holds_t, audit_t)
            )
    finally:
        engine.dispose()


@pytest.fixture
def small_store(sqlite_url, frozen):
    """A store with three sessions: alice and bob on CM Concurrent, carol on CM Named."""
    engine = db.connect(sqlite_url)
    catalog.add_pool(engine, CM, CONC, 5)
    catalog.add_pool(engine, CM, "Named User", 5)
    catalog.add_pool(engine, "Reports Only", CONC, 5)
    catalog.assign_named(engine, CM, "carol")
    start = frozen.now
    ids = {
        "alice": sessions.login(
            engine, "alice", {CM: CONC}, host="ws-1", at=start - timedelta(hours=3)
        ).session_id,
        "bob": sessions.login(
            engine, "bob", {CM: CONC}, at=start - timedelta(minutes=125)
        ).session_id,
        "carol": sessions.login(
            engine, "carol", {CM: "Named User"}, at=start - timedelta(minutes=5)
        ).session_id,
    }
    engine.dispose()
    return sqlite_url, ids


# --- the "done when" scenario ----------------------------------------------------------


def test_demo_filter_logout_scenario(store_url, frozen):
    result = run("demo", "--db", store_url, "--users", "60", "--days", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "Demo data written: 60 users" in result.stdout

    listed = run("sessions", "--db", store_url, "--license", f"{CM}={CONC}", "--format", "json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert len(rows) >= 2
    assert all(row[CM] == CONC for row in rows)
    engine = db.connect(store_url)
    expected = queries.session_usage(engine, license_types={CM: [CONC]})
    assert [r["session_id"] for r in rows] == list(expected["session_id"])

    table = run("sessions", "--db", store_url, "--license", f"{CM}={CONC}")
    assert table.exit_code == 0
    body = table.stdout.splitlines()[2:-1]  # header, rule, rows..., count
    assert len(body) == len(rows)
    assert all(CONC in line for line in body)

    two = [str(rows[0]["session_id"]), str(rows[1]["session_id"])]
    out = run("logout", "--db", store_url, *two, "--actor", "admin1", "--yes")
    assert out.exit_code == 0, out.output
    assert f"Logged out: {', '.join(sorted(two, key=int))}" in out.stdout

    after = json.loads(
        run("sessions", "--db", store_url, "--license", f"{CM}={CONC}", "--format", "json").stdout
    )
    assert {r["session_id"] for r in after} == {r["session_id"] for r in rows} - set(map(int, two))
    events = queries.audit_log(engine, actor="admin1")
    assert sorted(events["session_id"].tolist()) == sorted(map(int, two))
    assert set(events["action"]) == {"end_session"}
    engine.dispose()


# --- sessions ----------------------------------------------------------------------------------


def test_sessions_json_has_iso_times_and_idle_seconds(small_store):
    url, _ = small_store
    result = run("sessions", "--db", url, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["user"] for r in rows] == ["alice", "bob", "carol"]
    alice = rows[0]
    assert set(alice) == {*queries.BASE_COLUMNS, CM, "Reports Only"}
    assert datetime.fromisoformat(alice["last_activity"]) == NOW - timedelta(hours=3)
    assert datetime.fromisoformat(alice["started_at"]).utcoffset() == timedelta(0)
    assert alice["idle"] == 3 * 3600
    assert (alice["host"], alice[CM], alice["Reports Only"]) == ("ws-1", CONC, None)
    assert rows[1]["host"] is None


def test_sessions_csv(small_store):
    url, _ = small_store
    result = run("sessions", "--db", url, "--format", "csv", "--user", "CAR")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1
    assert rows[0]["user"] == "carol"
    assert rows[0][CM] == "Named User"
    assert rows[0]["Reports Only"] == ""
    assert rows[0]["idle"] == "300"
    assert datetime.fromisoformat(rows[0]["last_activity"]) == NOW - timedelta(minutes=5)


def test_sessions_table_shows_local_times_and_readable_idle(small_store):
    url, _ = small_store
    original = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        result = run("sessions", "--db", url, "--idle-over", "2h")
    finally:
        if original is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = original
        time.tzset()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "User", "Host", "Started"]
    assert "Last Activity" in lines[0]
    assert "alice" in lines[2]
    assert "2026-03-02 08:00" in lines[2]  # 07:00 UTC in Berlin (UTC+1 in March)
    assert "3h 00m" in lines[2]
    assert "2h 05m" in lines[3]
    assert lines[-1].startswith("2 active sessions")


def test_sessions_repeated_license_of_one_product_matches_either(small_store):
    url, _ = small_store
    result = run(
        "sessions", "--db", url, "--format", "json",
        "--license", f"{CM}={CONC}", "--license", f"{CM}=Named User",
    )  # fmt: skip
    assert result.exit_code == 0
    assert [r["user"] for r in json.loads(result.stdout)] == ["alice", "bob", "carol"]


def test_sessions_of_an_empty_store(sqlite_url):
    result = run("sessions", "--db", sqlite_url)
    assert result.exit_code == 0
    assert "0 active sessions" in result.stdout
    assert json.loads(run("sessions", "--db", sqlite_url, "--format", "json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--license", "Nope=Concurrent User"], "unknown product 'Nope'"),
        (["--license", f"{CM}=Platinum"], "no license type 'Platinum'"),
        (["--license", "Case Management"], "not PRODUCT=TYPE"),
        (["--license", "=Concurrent User"], "not PRODUCT=TYPE"),
        (["--license", f"{CM}="], "not PRODUCT=TYPE"),
        (["--idle-over", "-2h"], "negative"),
        (["--idle-over", "2"], "no unit"),
        (["--idle-over", ""], "empty"),
        (["--idle-over", "soon"], "invalid duration"),
        (["--idle-over", "99999d"], "too long"),
        (["--format", "xml"], "--format"),
        (["--bogus"], "No such option"),
    ],
)
def test_sessions_bad_input_is_one_line_exit_2(small_store, args, message):
    url, _ = small_store
    before = snapshot(url)
    line = one_error_line(run("sessions", "--db", url, *args))
    assert message in line
    assert snapshot(url) == before


# --- logout ------------------------------------------------------------------------------------


def test_logout_reports_each_kind_of_id(small_store):
    url, ids = small_store
    first = run("logout", str(ids["alice"]), "--db", url, "--actor", "admin1", "--yes")
    assert first.exit_code == 0, first.output
    result = run(
        "logout", str(ids["alice"]), str(ids["bob"]), "777", "--db", url, "--actor", "admin1",
        "--yes",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # an unknown id (777): exit 1 (issue 9)
    assert result.stdout.splitlines() == [
        f"Logged out: {ids['bob']}",
        f"Already ended: {ids['alice']}",
        "Unknown: 777",
    ]


def test_logout_without_a_terminal_needs_yes(small_store):
    url, ids = small_store
    before = snapshot(url)
    line = one_error_line(run("logout", str(ids["bob"]), "--db", url, "--actor", "admin1"))
    assert "--yes" in line
    assert snapshot(url) == before


@pytest.mark.parametrize(
    "args",
    [
        ["abc", "--actor", "a", "--yes"],
        ["1.5", "--actor", "a", "--yes"],
        ["0", "--actor", "a", "--yes"],
        ["99999999999999999999999", "--actor", "a", "--yes"],
        ["1", "--actor", "  ", "--yes"],
        ["--actor", "a", "--yes"],  # no id
    ],
)
def test_logout_bad_input_is_one_line_exit_2(small_store, args):
    url, _ = small_store
    before = snapshot(url)
    one_error_line(run("logout", "--db", url, *args))
    assert snapshot(url) == before


def _run_on_a_terminal(args: list[str], answer: str, env: dict) -> str:
    """Run ``python -m licusage`` with a pseudo-terminal as its stdin/stdout; answer the prompt."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "licusage", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(leader, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    return output.decode(errors="replace").replace("\r\n", "\n") + f"\nexit={process.returncode}"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_logout_asks_on_a_terminal_naming_sessions_users_and_licenses(small_store):
    url, ids = small_store
    env = {**os.environ, "LICUSAGE_DATABASE_URL": url}
    args = ["logout", str(ids["alice"]), str(ids["carol"]), "404", "--actor", "admin1"]
    before = snapshot(url)
    declined = _run_on_a_terminal(args, "n", env)
    assert f"#{ids['alice']}  alice  frees: {CM} ({CONC})" in declined
    assert f"#{ids['carol']}  carol  frees: {CM} (Named User)" in declined
    assert "Unknown: 404" in declined
    assert "Cancelled: nothing changed." in declined
    assert declined.endswith("exit=1")
    assert snapshot(url) == before

    accepted = _run_on_a_terminal(args, "y", env)
    assert f"Logged out: {ids['alice']}, {ids['carol']}" in accepted
    assert accepted.count("Unknown: 404") == 1  # said in the preview, not again in the report
    assert accepted.endswith("exit=1")  # 404 is unknown (issue 9)
    engine = db.connect(url)
    assert list(queries.session_usage(engine)["user"]) == ["bob"]
    engine.dispose()


# --- reap, pools, demo, --db -------------------------------------------------------------------


def test_reap_dry_run_then_for_real(small_store):
    url, ids = small_store
    before = snapshot(url)
    dry = run("reap", "--db", url, "--idle-over", "1h30m", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would end 2 idle sessions (limit 1h 30m)." in dry.stdout
    assert "alice" in dry.stdout
    assert "bob" in dry.stdout
    assert snapshot(url) == before
    real = run("reap", "--db", url, "--idle-over", "2h30m")
    assert real.exit_code == 0, real.output
    assert real.stdout.startswith("Ended 1 idle session (limit 2h 30m).")
    engine = db.connect(url)
    assert list(queries.session_usage(engine)["user"]) == ["bob", "carol"]
    events = queries.audit_log(engine)
    assert events[["actor", "reason", "session_id"]].values.tolist() == [
        ["policy", "idle_timeout", ids["alice"]]
    ]
    engine.dispose()


@pytest.mark.parametrize("value", ["0s", "-5m", "0", "abc", "99999999999d", "1h-5m", "nan"])
def test_reap_bad_durations(small_store, value):
    url, _ = small_store
    before = snapshot(url)
    one_error_line(run("reap", "--db", url, "--idle-over", value))
    assert snapshot(url) == before


def test_pools_table_and_json(small_store):
    url, _ = small_store
    table = run("pools", "--db", url)
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["Product", "License", "Type"]
    assert any(line.startswith(CM) and " 2 " in line for line in table.stdout.splitlines())
    rows = json.loads(run("pools", "--db", url, "--format", "json").stdout)
    conc = next(r for r in rows if r["product"] == CM and r["license_type"] == CONC)
    assert (conc["seats"], conc["in_use"], conc["free"], conc["expires_at"]) == (5, 2, 3, None)


def test_demo_refuses_a_non_empty_store(small_store):
    url, _ = small_store
    before = snapshot(url)
    line = one_error_line(run("demo", "--db", url, "--users", "5", "--days", "1"))
    assert "already holds 3 sessions" in line
    assert snapshot(url) == before


@pytest.mark.parametrize("args", [["--users", "0"], ["--days", "x"], ["--seed", "-1"]])
def test_demo_bad_sizes(sqlite_url, args):
    one_error_line(run("demo", "--db", sqlite_url, *args))


def test_db_may_come_before_the_command_or_from_the_environment(small_store):
    url, _ = small_store
    before = run("--db", url, "sessions", "--format", "json")
    assert before.exit_code == 0, before.output
    assert len(json.loads(before.stdout)) == 3
    from_env = run("sessions", "--format", "json", env={"LICUSAGE_DATABASE_URL": url})
    assert from_env.exit_code == 0, from_env.output
    assert json.loads(from_env.stdout) == json.loads(before.stdout)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody@127.0.0.1:1/licusage",
        "sqlite:////nonexistent-dir/deeper/store.sqlite",
        "notadriver://x",
    ],
)
def test_an_unreachable_database_is_one_line_exit_2(url):
    for args in (["sessions"], ["pools"], ["demo"], ["reap", "--idle-over", "1h"]):
        line = one_error_line(run(*args, "--db", url))
        assert "store" in line or "database" in line


def test_every_command_has_an_example_in_its_help():
    for command in ("demo", "sessions", "pools", "logout", "reap"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.stdout
        assert f"licusage {command}" in result.stdout
        assert "--db URL" in result.stdout


def test_python_dash_m_runs_the_same_cli(sqlite_url):
    done = subprocess.run(
        [sys.executable, "-m", "licusage", "sessions", "--db", sqlite_url, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]")
    bad = subprocess.run(
        [sys.executable, "-m", "licusage", "sessions", "--db", sqlite_url, "--idle-over", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1


def test_parse_license_options():
    assert parse_license_options(()) is None
    assert parse_license_options([f" {CM} = {CONC} ", f"{CM}=Named User", f"{CM}={CONC}"]) == {
        CM: [CONC, "Named User"]
    }
    assert parse_license_options(["A=B=C"]) == {"A": ["B=C"]}
    with pytest.raises(InvalidInput):
        parse_license_options(["no equals sign"])


def test_demo_command_writes_the_generator_data(sqlite_url, tmp_path, frozen):
    result = run("demo", "--db", sqlite_url, "--users", "30", "--days", "2", "--seed", "4")
    assert result.exit_code == 0, result.output
    reference = db.connect(f"sqlite:///{tmp_path / 'ref.sqlite'}")
    summary = demo.generate(reference, users=30, days=2, seed=4, now=frozen.now)
    reference.dispose()
    assert f"{summary.sessions} sessions ({summary.active_sessions} active)" in result.stdout


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("45m", timedelta(minutes=45)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h", timedelta(hours=26)),
        (" 1h 30m ", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
        ("0s", timedelta(0)),
        ("3650d", timedelta(days=3650)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration_accepts(text, expected):
    assert durations.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5m", "negative"),
        ("90", "no unit"),
        ("1.5h", "invalid duration"),
        ("2w", "unknown unit"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("1h30", "invalid duration"),
        ("h", "invalid duration"),
        ("3651d", "too long"),
        ("9" * 40 + "s", "too long"),
        ("\uff19h", "invalid duration"),  # full-width digits are not digits here
    ],
)
def test_parse_duration_refuses(text, message):
    with pytest.raises(InvalidInput, match=message):
        durations.parse_duration(text)


def test_parse_duration_minimum_and_type():
    with pytest.raises(InvalidInput, match="too short"):
        durations.parse_duration("0s", minimum=timedelta(seconds=1))
    with pytest.raises(InvalidInput):
        durations.parse_duration(120)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=12, seconds=5), "12m 05s"),
        (timedelta(hours=2, minutes=5, seconds=59), "2h 05m"),
        (timedelta(days=3, hours=4, minutes=1), "3d 04h"),
        (timedelta(seconds=-30), "0s"),
        (timedelta(milliseconds=999), "0s"),
    ],
)
def test_format_duration(value, shown):
    assert durations.format_duration(value) == shown
