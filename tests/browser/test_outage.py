"""Outage: the store's PostgreSQL goes down while the dashboard is open, then comes back.

The test starts a private PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a free port, in a temp
directory owned by the ``postgres`` OS user: initdb refuses to run as root), serves the
dashboard on it, stops the cluster, and checks that the page shows a clear notification, that
the CLI exits 2 with one line, and that Run works again once the cluster is back, without
restarting the app.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from licusage import catalog, db, queries, sessions
from tests.browser.conftest import (
    ROOT,
    expect,
    free_port,
    seed_store,
    tick_row,
    wait_for_dashboard,
)
from tests.browser.test_dashboard import row_of, rows, run, server_has_filter, set_user
from tests.helpers import require
from tests.test_contention import add_sessions
from tests.test_hostile import store_checksum
from tests.test_kill import BATCH
from tests.test_kill import _start as start_logout
from tests.test_kill import _state as logout_state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("browser_outage"),
]


def _pg_bin() -> Path:
    """The newest PostgreSQL server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster in `directory`, listening on 127.0.0.1:`port`."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", PG_USER, "--", *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def init(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` (sessions rolled back) or ``immediate`` (as a crash)."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [
                "runuser",
                "-u",
                PG_USER,
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "status",
            ],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    require((PG_BIN / "initdb").exists(), f"PostgreSQL server binaries not found in {PG_BIN}")
    require(shutil.which("runuser") is not None, "runuser is not available")
    try:
        owner = pwd.getpwnam(PG_USER)
    except KeyError:
        require(False, f"no {PG_USER} OS user to run initdb as")
        raise
    directory = Path(tempfile.mkdtemp(prefix="licusage-pg-"))
    os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = PrivatePostgres(directory, free_port())
    try:
        cluster.init()
        cluster.start()
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE licusage")
        admin.dispose()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "licusage", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dashboard_survives_a_database_outage(private_pg, server_factory, browser_page):
    url = private_pg.url("licusage")
    seed_store(url)
    server = server_factory(url)  # loopback, no sign-in: the local user acts as admin
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    count_line = re.compile(r"^7 sessions of \d+ distinct users")

    page.get_by_role("button", name="Run").click()
    expect()(page.get_by_text(count_line)).to_be_visible()
    expect()(page.locator(".tabulator-row")).to_have_count(7)

    private_pg.stop()
    page.get_by_role("button", name="Run").click()
    error = page.locator(".notyf__toast--error", has_text="database is unavailable")
    try:
        expect()(error.first).to_be_visible(timeout=60_000)
    except AssertionError as failure:
        shown = page.locator(".notyf__message").all_inner_texts()
        raise AssertionError(f"{failure}\nshown: {shown}\n{server.log_text()[-2000:]}") from None
    assert "Traceback" not in page.content()
    for args in (["sessions", "--db", url], ["db", "current", "--db", url]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr

    private_pg.start()  # the same app process: no restart
    engine = db.connect(url)
    try:  # a change made while the page was cut off: the next Run must show it
        sessions.login(engine, "frank.back", {"Case Management": catalog.CONCURRENT_USER})
    finally:
        engine.dispose()
    page.get_by_role("button", name="Run").click()
    expect()(page.get_by_text(re.compile(r"^8 sessions of \d+ distinct users"))).to_be_visible()
    expect()(page.locator(".tabulator-row")).to_have_count(8)
    expect()(page.locator(".tabulator-row", has_text="frank.back")).to_have_count(1)
    assert server.process.poll() is None
    result = cli("sessions", "--db", url)
    assert result.returncode == 0, result.stderr
    assert "frank.back" in result.stdout


def test_an_outage_keeps_the_filter_and_selection_and_a_logout_in_it_changes_nothing(
    private_pg, server_factory, browser_page
):
    admin = sa.create_engine(private_pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE kept")
    admin.dispose()
    url = private_pg.url("kept")
    seed_store(url)
    server = server_factory(url)
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    set_user(page, "alice")
    run(page, expected_count=2)
    tick_row(page, row_of(page, "alice.floating"), "1 selected")
    page.get_by_role("button", name="Logout Session").click()  # the dialog, read while up
    expect()(page.get_by_text("Log out 1 session of 1 user (alice.floating)?")).to_be_visible()
    engine = db.connect(url)
    try:
        target = int(queries.session_usage(engine, user="alice.floating")["session_id"].iloc[0])
        before = store_checksum(engine)
    finally:
        engine.dispose()

    private_pg.stop()
    page.get_by_role("button", name="Logout", exact=True).click()  # confirmed in the outage
    errors = page.locator(".notyf__toast--error", has_text="database is unavailable")
    expect()(errors.first).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Run").click()
    expect()(errors).to_have_count(2, timeout=60_000)  # the logout's and the Run's
    assert "Traceback" not in page.content()
    # what the page showed stays: the filter, the rows, the selection
    expect()(page.get_by_label("User")).to_have_value("alice")
    server_has_filter(page, "user='alice'")
    expect()(rows(page)).to_have_count(2)
    expect()(page.get_by_text("1 selected")).to_be_visible()
    expect()(row_of(page, "alice.floating").locator("input[type=checkbox]")).to_be_checked()

    private_pg.start()  # the same app process: no restart
    engine = db.connect(url)
    try:
        assert store_checksum(engine) == before  # no write half-applied, none at all
        run(page, expected_count=2)
        expect()(page.get_by_text("1 selected")).to_be_visible()
        # writes work again too: the same logout, now
        page.get_by_role("button", name="Logout Session").click()
        page.get_by_role("button", name="Logout", exact=True).click()
        expect()(page.locator(".notyf__message", has_text="Logged out 1 session.")).to_be_visible()
        expect()(row_of(page, "alice.floating")).to_have_count(0)
        ended = queries.sessions_by_id(engine, [target])
        assert ended["ended_at"].notna().all()
        log = queries.audit_log(engine)
        assert (log.loc[log["action"] == "end_session", "session_id"] == target).sum() == 1
    finally:
        engine.dispose()
    assert server.process.poll() is None


CUTS = 6


def test_the_database_going_away_in_the_middle_of_a_logout_leaves_it_whole(private_pg):
    """The server stopped (``pg_ctl stop -m immediate``: a crash) at a random moment of a
    3,000-session logout, CUTS times: after the restart each batch is all ended with one audit
    event per session, or all still active."""
    admin = sa.create_engine(private_pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE cut")
    admin.dispose()
    url = private_pg.url("cut")
    engine = db.connect(url)
    try:
        ids = add_sessions(engine, BATCH * (CUTS + 1))
        batches = [ids[i * BATCH : (i + 1) * BATCH] for i in range(CUTS + 1)]
        whole = start_logout(url, batches[0])  # how long a whole logout takes here, now
        started = time.monotonic()
        assert whole.wait(timeout=600) == 0
        duration = time.monotonic() - started
        rng = random.Random(15)
        outcomes = {"rolled back": 0, "committed": 0}
        for batch in batches[1:]:
            process = start_logout(url, batch)
            time.sleep(rng.uniform(0, duration * 0.8))
            private_pg.stop("immediate")
            process.wait(timeout=120)
            private_pg.start()
            engine.dispose()  # its connections died with the server
            ended, events, unaudited = logout_state(engine, batch)
            assert (ended, events, unaudited) in ((0, 0, 0), (BATCH, BATCH, 0)), (ended, events)
            outcomes["rolled back" if ended == 0 else "committed"] += 1
        print(
            f"\nPostgreSQL stopped (immediate) x{CUTS} in a {BATCH}-session logout: "
            + ", ".join(f"{n} {what}" for what, n in outcomes.items())
            + f" (logout {duration:.2f} s)"
        )
        assert outcomes["rolled back"] >= 1  # at least one cut fell inside the transaction
    finally:
        engine.dispose()
