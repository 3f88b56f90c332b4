"""The CLI prints stored names escaped (issue 15, finding 5): a newline or a terminal escape in
a user name (stored by a release that did not refuse them) cannot forge a line of the logout
confirmation, and actor names are checked like user names. On SQLite and PostgreSQL."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import catalog, db, sessions
from licusage.cli import main
from licusage.models import holds_t, sessions_t
from tests.test_cli import _run_on_a_terminal

CM, CONC = "Case Management", catalog.CONCURRENT_USER
SPOOF = "mallory\nAlready ended: 1, 2, 3 (nothing will change)\x1b[2K\x1b[1A"


@pytest.fixture
def old_store(store_url):
    """A store holding a session whose user name has a newline and escape codes, as the
    releases before issue 15 accepted (written directly: login refuses it now)."""
    engine = db.connect(store_url)
    catalog.add_pool(engine, CM, CONC, 5)
    sid = sessions.login(engine, "mallory", {CM: CONC}).session_id
    with db.write(engine) as conn:
        conn.execute(sa.update(sessions_t).where(sessions_t.c.id == sid).values(user_name=SPOOF))
        conn.execute(sa.update(holds_t).where(holds_t.c.session_id == sid).values(user_name=SPOOF))
    engine.dispose()
    return store_url, sid


def test_the_logout_confirmation_cannot_be_spoofed(old_store):
    url, sid = old_store
    env = {**os.environ, "LICUSAGE_DATABASE_URL": url}
    shown = _run_on_a_terminal(["logout", str(sid), "--actor", "admin1"], "n", env)
    assert "\x1b" not in shown
    assert f"#{sid}  mallory\\nAlready ended: 1, 2, 3 (nothing will change)\\x1b[2K" in shown
    assert not any(line.startswith("Already ended") for line in shown.splitlines())
    assert "Cancelled: nothing changed." in shown


def test_the_sessions_table_escapes_stored_names(old_store):
    url, _ = old_store
    result = CliRunner().invoke(main, ["sessions", "--db", url])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    assert "mallory\\nAlready ended" in result.stdout
    assert len(result.stdout.splitlines()) == 4  # header, rule, one row, count


@pytest.mark.parametrize(
    "actor", ["<img src=x onerror=alert(1)>\n", "adm\x1b[31min", "ad\u200bmin", "\u202enimda", ""]
)
def test_bad_actor_names_are_one_line_exit_2(old_store, actor):
    url, sid = old_store
    result = CliRunner().invoke(main, ["logout", str(sid), "--actor", actor, "--yes", "--db", url])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "actor" in result.stderr
