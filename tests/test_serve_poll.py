"""Polling a FlexLM server inside ``licusage serve --poll NAME=COMMAND``.

The status command is a real program (a Python script written by the test) that prints a
``lmstat -a`` snapshot where ``lmutil lmstat -a`` would, or fails."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from licusage import db, queries
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.sources.poll import Poller, PollTarget
from tests.browser.conftest import start_server
from tests.helpers import wait_until
from tests.test_sources_lmstat import FIXTURES


def _printer(tmp_path, snapshot: str | Path) -> str:
    """A command that prints the fixture `snapshot` (or the file at that path)."""
    path = snapshot if isinstance(snapshot, Path) else FIXTURES / snapshot
    script = tmp_path / f"print-{path.stem}.py"
    script.write_text(
        f"import sys; sys.stdout.write(open({str(path)!r}).read())",
        encoding="utf-8",
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def test_poll_targets_are_name_equals_command():
    assert PollTarget.parse(" lic1 = lmutil lmstat -a ") == PollTarget("lic1", "lmutil lmstat -a")
    for bad in ("lic1", "=lmutil", "lic1=", "lic1=   "):
        with pytest.raises(InvalidInput, match=r"NAME=COMMAND|empty"):
            PollTarget.parse(bad)


def test_a_poll_reconciles_and_a_failing_server_changes_nothing(sqlite_url, tmp_path):
    good = PollTarget("lic1", _printer(tmp_path, "lmstat-1.txt"))
    broken = PollTarget("lic2", f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(4)'")
    poller = Poller(sqlite_url, [broken, good], timedelta(minutes=1))
    poller.poll_once()
    engine = db.connect(sqlite_url)
    try:
        assert sorted(queries.session_usage(engine, source="lic1")["user"]) == ["ana", "bo"]
        assert queries.session_usage(engine, source="lic2").empty
    finally:
        engine.dispose()
    assert poller.last_error["lic1"] is None
    assert "exit code 4" in poller.last_error["lic2"]


def test_one_server_polled_with_lmstat_a_and_lmstat_i(sqlite_url, tmp_path, frozen):
    listing = tmp_path / "lmstat-i.txt"
    listing.write_text(
        "Feature  Version  #licenses  Expires  Vendor\n"
        "solver  1.0  10  30-apr-2026  mech\nmesher  1.0  3  permanent  mech\n"
    )
    status = PollTarget("lic1", _printer(tmp_path, "lmstat-1.txt"))
    seats = PollTarget("lic1", _printer(tmp_path, listing))
    poller = Poller(sqlite_url, [status, seats], timedelta(minutes=1))
    poller.poll_once()
    engine = db.connect(sqlite_url)
    try:
        pools = queries.pool_usage(engine).set_index("product")
    finally:
        engine.dispose()
    assert pools.loc["solver", ["seats", "in_use"]].tolist() == [10, 9]
    assert f"{pools.loc['solver', 'expires_at']:%Y-%m-%d %H:%M}" == "2026-05-01 00:00"
    assert pd.isna(pools.loc["mesher", "expires_at"])
    assert poller.last_error == {"lic1": None}
    # one of the server's two commands failing: the server's error, whichever ran last
    failing = PollTarget("lic1", f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(4)'")
    poller = Poller(sqlite_url, [failing, status], timedelta(minutes=1))
    poller.poll_once()
    assert "exit code 4" in poller.last_error["lic1"]


def test_serve_refuses_a_malformed_poll_in_one_line(sqlite_url):
    result = CliRunner().invoke(main, ["serve", "--db", sqlite_url, "--poll", "lic1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: --poll takes NAME=COMMAND, e.g. lic1='lmutil lmstat -a -c 27000@lic1', not 'lic1'"
    ]


@pytest.mark.slow
def test_serve_polls_inside_the_server(sqlite_url, tmp_path):
    command = _printer(tmp_path, "lmstat-1.txt")
    server = start_server(
        sqlite_url, "--poll", f"lic1={command}", "--poll-every", "1s", log_dir=tmp_path
    )
    engine = db.connect(sqlite_url)
    try:

        def polled() -> bool:
            return sorted(queries.session_usage(engine, source="lic1")["user"]) == ["ana", "bo"]

        wait_until(polled, timeout=120)  # the first poll, once the server is up
    finally:
        server.stop()
        engine.dispose()
