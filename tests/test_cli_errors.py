"""What a newcomer runs into: each mistake is exit 2 (or 1, where said) with one line on stderr
and no traceback. Issue 9's list."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from licusage import actions, catalog, db, queries, sessions
from licusage.cli import main
from tests.test_cli import _run_on_a_terminal


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("url", "module"),
    [
        ("mysql://u@db.example/licusage", "MySQLdb"),
        ("mysql+pymysql://u@db.example/licusage", "pymysql"),
        ("mssql://u@db.example/licusage", "pyodbc"),
    ],
)
@pytest.mark.parametrize("command", [["sessions"], ["pools"], ["db", "upgrade"]])
def test_a_database_without_its_driver_says_which_and_what_is_supported(url, module, command):
    line = one_error_line(run(*command, "--db", url))
    assert f"the Python module {module}) is not installed" in line
    assert "SQLite" in line
    assert "PostgreSQL" in line


# --- logout ------------------------------------------------------------------------------------


@pytest.fixture
def ended_store(sqlite_url, frozen):
    """Sessions 1 and 2 ended (as `licusage logout 12 15` meets in a demo's history), 3 active."""
    engine = db.connect(sqlite_url)
    catalog.add_pool(engine, "Case Management", catalog.CONCURRENT_USER, 5)
    ids = [
        sessions.login(engine, user, {"Case Management": catalog.CONCURRENT_USER}).session_id
        for user in ("ann", "ben", "cid")
    ]
    actions.logout_sessions(engine, ids[:2], actor="someone")
    engine.dispose()
    return sqlite_url, ids


def test_logout_of_an_unknown_id_exits_1_and_still_ends_the_known(ended_store):
    url, ids = ended_store
    result = run("logout", str(ids[2]), "999999", "--db", url, "--actor", "admin1", "--yes")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"Logged out: {ids[2]}", "Unknown: 999999"]
    assert "Traceback" not in result.output
    engine = db.connect(url)
    assert queries.session_usage(engine).empty
    engine.dispose()


def test_actor_defaults_to_the_os_user_name(ended_store):
    url, ids = ended_store
    result = run("logout", str(ids[2]), "--db", url, "--yes")
    assert result.exit_code == 0, result.output
    engine = db.connect(url)
    events = queries.audit_log(engine)
    engine.dispose()
    assert events[events["session_id"] == ids[2]]["actor"].tolist() == [getpass.getuser()]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_logout_of_ended_sessions_on_a_terminal_says_already_ended_once(ended_store):
    url, ids = ended_store
    env = {**os.environ, "LICUSAGE_DATABASE_URL": url}
    output = _run_on_a_terminal(["logout", str(ids[0]), str(ids[1])], "y", env)
    assert output.count("Already ended") == 1, output
    assert f"Already ended: {ids[0]}, {ids[1]}" in output
    assert "Logged out: none" in output
    assert "[y/N]" not in output  # nothing to confirm
    assert output.endswith("exit=0")


# --- serve -------------------------------------------------------------------------------------


def test_serve_with_a_bad_store_fails_before_announcing(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "store.sqlite"
    for url in (f"sqlite:///{missing}", "postgresql://nobody@127.0.0.1:1/licusage"):
        result = run("serve", "--db", url, "--port", str(free_port()))
        line = one_error_line(result)
        assert "cannot use the store" in line or "unable to open" in line, line
        assert "Serving" not in result.output


def test_serve_on_a_port_in_use_is_one_line(sqlite_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--db", sqlite_url, "--port", str(port))
    line = one_error_line(result)
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert "Serving" not in result.output


def test_serve_demo_says_where_the_store_is_and_that_demo_data_was_written(tmp_path):
    """A real `licusage serve --demo` process: its first lines, before it serves."""
    store = tmp_path / "demo.sqlite"
    port = free_port()
    command = [sys.executable, "-m", "licusage", "serve", "--demo", "--db", f"sqlite:///{store}"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        assert process.stderr is not None
        for line in process.stderr:  # blocks until each line: no timing assumptions
            lines.append(line.rstrip("\n"))
            if line.startswith("Serving"):
                break
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert lines[0] == f"Store: SQLite file {store.resolve()}", lines
    assert lines[1].startswith("Demo data written: 200 users, "), lines
    assert lines[-1] == f"Serving Session License Usage at http://localhost:{port}/"
