"""actions.preview_logout: what a logout would do, read from the store, by the action's own rules
(the actor's own sessions by identity, already ended, unknown, licenses per product and type),
and LogoutResult.summary, the one text of a result. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sys

import pytest

from licusage import actions, catalog, db, queries, sessions
from licusage.errors import InvalidInput
from licusage.sources import remove
from licusage.sources.lmstat import import_lmstat, read_text
from tests.test_actions import snapshot
from tests.test_cli import _run_on_a_terminal
from tests.test_sources_lmstat import FIXTURES

CM, RO = "Case Management", "Reports Only"
CONC = catalog.CONCURRENT_USER


@pytest.fixture
def store(engine, frozen):
    """Alice (the admin, CM + RO) on two hosts, bob (CM), carol (no license), erin (ended)."""
    catalog.add_pool(engine, CM, CONC, 5)
    catalog.add_pool(engine, RO, CONC, 5)
    ids = {
        "alice": sessions.login(engine, "Alice", {CM: CONC, RO: CONC}, host="ws1").session_id,
        "alice2": sessions.login(engine, "alice", {CM: CONC}, host="ws2").session_id,
        "bob": sessions.login(engine, "bob", {CM: CONC}, host="ws3").session_id,
        "carol": sessions.login(engine, "carol", {}, host=None).session_id,
        "erin": sessions.login(engine, "erin", {CM: CONC}).session_id,
    }
    sessions.end(engine, ids["erin"])
    return engine, ids


def freed(preview: actions.LogoutPreview) -> dict[tuple[str, str], int]:
    return {(r.product, r.license_type): r.count for r in preview.licenses.itertuples()}


def test_own_sessions_plus_others_keeps_every_other_id(store):
    engine, ids = store
    requested = [ids["alice"], ids["alice2"], ids["bob"], ids["carol"], ids["erin"], 999_999]
    before = snapshot(engine)
    preview = actions.preview_logout(engine, requested, "ALICE")
    assert snapshot(engine) == before  # a preview changes nothing
    assert preview.spared == tuple(sorted([ids["alice"], ids["alice2"]]))  # by identity
    assert preview.session_ids == (ids["bob"], ids["carol"], ids["erin"], 999_999)
    assert preview.active == (ids["bob"], ids["carol"])
    assert preview.already_ended == (ids["erin"],)
    assert preview.unknown == (999_999,)
    assert preview.users == ("bob", "carol")
    assert list(preview.sessions["session_id"]) == [ids["bob"], ids["carol"]]
    assert list(preview.sessions["host"].fillna("")) == ["ws3", ""]
    assert freed(preview) == {(CM, CONC): 1}  # carol holds none; alice's are spared
    assert preview.on_servers == {}
    assert preview.text() == "Log out 2 sessions of 2 users (bob, carol)?"
    # the logout of what the preview names does what it said
    result = actions.authorized_logout(engine, preview.session_ids, "ALICE", actions.ADMIN)
    assert result.logged_out == preview.active
    assert result.already_ended == preview.already_ended
    assert result.unknown == preview.unknown
    # given every id, the action spares the same sessions the preview does
    again = actions.logout_sessions(engine, requested, "ALICE", spare_own=True)
    assert again.spared == preview.spared


def test_without_sparing_own_sessions_are_targets(store):
    engine, ids = store
    preview = actions.preview_logout(engine, [ids["alice"], ids["bob"]], "alice", spare_own=False)
    assert preview.spared == ()
    assert preview.active == (ids["alice"], ids["bob"])
    assert preview.users == ("Alice", "bob")  # the stored spelling
    assert freed(preview) == {(CM, CONC): 2, (RO, CONC): 1}
    held = preview.held[preview.held["session_id"] == ids["alice"]]
    assert sorted(held["product"]) == [CM, RO]


def test_only_ended_and_unknown_ids(store):
    engine, ids = store
    preview = actions.preview_logout(engine, [ids["erin"], 424_242], "admin1")
    assert preview.active == ()
    assert preview.session_ids == (ids["erin"], 424_242)
    assert (preview.already_ended, preview.unknown) == ((ids["erin"],), (424_242,))
    assert preview.sessions.empty
    assert preview.licenses.empty
    assert preview.users == ()
    assert actions.preview_logout(engine, [], "admin1").session_ids == ()


def test_a_license_server_session(engine):
    import_lmstat(engine, read_text(str(FIXTURES / "lmstat-1.txt")), server="lic1", source="x")
    active = actions.preview_logout(engine, range(1, 10), "admin1").active
    assert len(active) == 2  # ana and bo
    preview = actions.preview_logout(engine, active, "admin1")
    assert preview.on_servers == dict.fromkeys(active, "lic1")
    assert list(preview.sessions["source"]) == ["lic1", "lic1"]
    assert preview.users == ("ana", "bo")
    # licenses counted as checked out: ana holds 4 solver + 1 mesher, bo 3 solver
    assert freed(preview) == {("mesher", "Floating"): 1, ("solver", "Floating"): 7}
    # lic1 has no removal command yet: the logout could not end its sessions, and says so first
    assert preview.without_removal == ("lic1",)
    remove.set_remove_command(
        engine, "lic1", "lmutil lmremove -h {feature} {handle_host} {handle_port} {handle_id}"
    )
    assert actions.preview_logout(engine, active, "admin1").without_removal == ()
    remove.set_remove_command(engine, "lic1", None)
    assert actions.preview_logout(engine, active, "admin1").without_removal == ("lic1",)


@pytest.mark.parametrize(
    ("ids", "actor"),
    [("12", "admin1"), ([1.5], "admin1"), ([True], "admin1"), ([2**70], "admin1"), ([1], "  ")],
)
def test_bad_input_raises(store, ids, actor):
    engine, _ = store
    with pytest.raises(InvalidInput):
        actions.preview_logout(engine, ids, actor)


def test_summary_sentence_and_lines():
    result = actions.LogoutResult(
        logged_out=(3, 4),
        already_ended=(5,),
        unknown=(9,),
        spared=(1,),
        not_removed={7: "solver on lic1: lmremove failed\nforged line"},
    )
    assert result.summary() == (
        "Logged out 2 sessions. 1 had already ended (5). Your own 1 session was left running. "
        "1 no longer exist. Session 7 is still logged in: solver on lic1: lmremove failed\n"
        "forged line."
    )
    assert result.summary("lines").splitlines() == [
        "Logged out: 3, 4",
        "Already ended: 5",
        "Unknown: 9",
        "Not logged out: 7: solver on lic1: lmremove failed\\nforged line",  # escaped
    ]
    assert result.summary("lines", previewed=True).splitlines()[0] == "Logged out: 3, 4"
    assert len(result.summary("lines", previewed=True).splitlines()) == 2
    assert actions.LogoutResult().summary("lines") == "Logged out: none"
    assert actions.LogoutResult().summary() == "Logged out 0 sessions."
    with pytest.raises(InvalidInput):
        result.summary("html")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_cli_confirmation_names_the_license_server(store_url):
    engine = db.connect(store_url)
    import_lmstat(engine, read_text(str(FIXTURES / "lmstat-1.txt")), server="lic1", source="x")
    bo = int(queries.session_usage(engine, user="bo")["session_id"].iloc[0])
    before = snapshot(engine)
    env = {**os.environ, "LICUSAGE_DATABASE_URL": store_url}
    shown = _run_on_a_terminal(["logout", str(bo), "--actor", "admin1"], "n", env)
    assert f"#{bo}  bo  frees: solver (Floating)  on server lic1" in shown
    assert "note: server lic1 has no removal command: its sessions stay logged in" in shown
    assert "Log out 1 session as admin1?" in shown
    assert "Cancelled: nothing changed." in shown
    assert snapshot(engine) == before
    engine.dispose()
