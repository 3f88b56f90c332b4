"""The dashboard's view classes in process (no browser): filters, seats, selection, logout."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from licusage import catalog, db, queries, sessions
from licusage.actions import ADMIN, VIEWER
from licusage.app import format as fmt
from licusage.app.explorer import SessionExplorer
from licusage.app.identity import Identity, anonymous_identity, mapped_role
from licusage.app.main import SessionsTab
from licusage.errors import InvalidInput
from licusage.server import ServeOptions, check_options, fill_demo
from licusage.sources.lmstat import import_lmstat, read_text
from licusage.sources.lmstat_info import import_lmstat_i
from tests.browser.conftest import free_port
from tests.test_sources_lmstat import FIXTURES as FLEXLM_FIXTURES

CM, RO = "Case Management", "Reports Only"
ME = "ada.admin"


def seed(engine, frozen) -> dict[str, int]:
    """Six sessions: user -> session id."""
    catalog.add_pool(engine, CM, catalog.NAMED_USER, 2)
    catalog.add_pool(engine, CM, catalog.CONCURRENT_USER, 4)
    catalog.add_pool(engine, RO, catalog.CONCURRENT_USER, 3)
    catalog.assign_named(engine, CM, "alice.named")
    logins = [
        ("alice.named", {CM: catalog.NAMED_USER}),
        ("alice.floating", {CM: catalog.CONCURRENT_USER, RO: catalog.CONCURRENT_USER}),
        ("bob.o'brien", {CM: catalog.CONCURRENT_USER}),
        ("carol.100%", {RO: catalog.CONCURRENT_USER}),
        ("erin.smith", {CM: catalog.CONCURRENT_USER}),
        (ME, {CM: catalog.CONCURRENT_USER}),
    ]
    ids = {}
    for user, licenses in logins:
        ids[user] = sessions.login(engine, user, licenses, host=f"ws-{user[:3]}").session_id
        frozen.advance(minutes=65)
    return ids


class Notes(list):
    def __call__(self, level: str, message: str) -> None:
        self.append((level, message))

    def errors(self) -> list[str]:
        return [m for level, m in self if level == "error"]


@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture
def ids(sqlite_engine, frozen):
    return seed(sqlite_engine, frozen)


def run_coroutine(coroutine):
    """Run `coroutine` to completion on a thread of its own: on an xdist worker that also ran
    browser tests, Playwright's sync API keeps an event loop running on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def make_tab(engine, notes, role=ADMIN, user=ME) -> SessionsTab:
    explorer = SessionExplorer(engine, Identity(user, role, signed_in=False), notify=notes)
    tab = SessionsTab(explorer)
    tab.__panel__().get_root()  # render the Bokeh models, as a served page does (the dialog needs them)
    return tab


def users_in(tab: SessionsTab) -> list[str]:
    return sorted(tab.results.table.value["User"])


def test_options_follow_the_catalogue(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    assert tab.options.user_input.label == "User"
    assert tab.options.idle_select.label == "Idle over"
    assert tab.options.run_button.label == "Run"
    inputs = tab.options.product_inputs
    assert list(inputs) == [CM, RO]
    assert inputs[CM].label == CM
    assert inputs[CM].options == [catalog.NAMED_USER, catalog.CONCURRENT_USER]
    assert inputs[RO].options == [catalog.CONCURRENT_USER]


def test_enter_in_a_text_filter_sends_value_and_value_input_at_once(sqlite_engine, ids, notes):
    # what the browser sends on Enter: both properties in one change (one watcher call)
    tab = make_tab(sqlite_engine, notes)
    tab.options.host_input.param.update(value="ws-bob", value_input="ws-bob")
    tab.options.user_input.param.update(value="bob", value_input="bob")
    assert (tab.explorer.host, tab.explorer.user) == ("ws-bob", "bob")
    assert "host='ws-bob'" in tab.options.code.value


def test_run_with_user_and_license_type(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.options.user_input.value_input = "ALICE"
    tab.options.product_inputs[CM].value = [catalog.NAMED_USER]
    run_coroutine(tab.options._run())
    assert users_in(tab) == ["alice.named"]
    table = tab.results.table.value
    assert list(table.columns) == [
        "ID",
        "User",
        "Host",
        "Started",
        "Last Activity",
        "Idle",
        CM,
        RO,
    ]
    assert table.loc[ids["alice.named"], "ID"] == ids["alice.named"]
    assert table.loc[ids["alice.named"], CM] == catalog.NAMED_USER
    assert table.loc[ids["alice.named"], RO] == ""
    assert tab.results.summary.value == "1 session of 1 distinct user"
    assert tab.results.table.pagination is None  # the database pages
    assert notes.errors() == []


def test_idle_filter(sqlite_engine, ids, notes, frozen):
    tab = make_tab(sqlite_engine, notes)
    tab.options.idle_select.value = "4h"  # logins 65 min apart, the last 65 min ago
    tab.explorer.run()
    assert users_in(tab) == ["alice.floating", "alice.named", "bob.o'brien"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'\"; DROP TABLE sessions; --", []),
        ("%", ["carol.100%"]),
        ("_", []),
        ("\\", []),
        ("x" * 100_000, []),
        ("  bob.o'brien  ", ["bob.o'brien"]),
    ],
    ids=["quotes", "percent", "underscore", "backslash", "very-long", "spaces"],
)
def test_bad_user_input_is_just_a_filter(sqlite_engine, ids, notes, text, expected):
    tab = make_tab(sqlite_engine, notes)
    tab.options.user_input.value = text
    assert tab.explorer.run() is True
    assert users_in(tab) == expected
    assert notes.errors() == []


def test_seat_gauges_show_use_and_filter_on_click(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    buttons = tab.seats.buttons
    assert set(buttons) == {
        (CM, catalog.NAMED_USER),
        (CM, catalog.CONCURRENT_USER),
        (RO, catalog.CONCURRENT_USER),
    }
    pools = tab.explorer.pools.set_index(["product", "license_type"])
    assert pools.loc[(CM, catalog.CONCURRENT_USER), "in_use"] == 4
    assert SeatsLevel.of(4, 4) == "danger"
    assert SeatsLevel.of(1, 4) == "success"
    assert SeatsLevel.of(0, 0) == "light"  # no seats, nobody asking: grey, not red
    assert SeatsLevel.of(1, 0) == "danger"
    buttons[(RO, catalog.CONCURRENT_USER)].clicks += 1
    assert users_in(tab) == ["alice.floating", "carol.100%"]
    assert tab.options.product_inputs[RO].value == [catalog.CONCURRENT_USER]


def test_a_few_products_show_their_filters_and_gauges_unfolded(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    assert tab.options.types_fold not in tab.options.__panel__().objects
    assert tab.seats.seats_fold not in tab.seats.__panel__().objects
    assert tab.options.product_inputs[CM] in tab.options._layout.objects


def test_many_products_fold_their_filters_and_gauges_behind_a_summary(sqlite_engine, frozen, notes):
    from licusage.app.views import MANY_POOLS, MANY_PRODUCTS

    products = [f"tool {n}" for n in range(MANY_PRODUCTS)] + ["R&D <beta>"]
    for product in products:
        catalog.add_pool(sqlite_engine, product, catalog.CONCURRENT_USER, 4)
        catalog.add_pool(sqlite_engine, product, catalog.NAMED_USER, 1)
    catalog.add_pool(sqlite_engine, "unknown seats", catalog.CONCURRENT_USER, None)
    catalog.add_pool(sqlite_engine, "expired", catalog.CONCURRENT_USER, 0)  # not "full"
    catalog.add_pool(sqlite_engine, "cut", catalog.CONCURRENT_USER, 1)
    sessions.login(sqlite_engine, "hal", {"cut": catalog.CONCURRENT_USER})
    catalog.add_pool(sqlite_engine, "cut", catalog.CONCURRENT_USER, 0)  # 1 in use of 0 seats
    assert 2 * len(products) + 1 > MANY_POOLS
    for user in ("ana", "bo", "cy"):  # 3 of 4: busy
        sessions.login(sqlite_engine, user, {"tool 0": catalog.CONCURRENT_USER})
    for user in ("dee", "eve", "fay", "gus"):  # 4 of 4: nearly full
        sessions.login(sqlite_engine, user, {"tool 1": catalog.CONCURRENT_USER})
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    options, seats = tab.options, tab.seats
    assert options.types_fold in options.__panel__().objects
    assert options.types_fold.collapsed
    assert not any(w in options._layout.objects for w in options.product_inputs.values())
    assert options.types_fold.title == "License types of 10 products"
    assert seats.__panel__().objects == [seats.seats_fold]
    assert seats.seats_fold.collapsed
    expired_bar = seats._gauges[("expired", catalog.CONCURRENT_USER)][0]
    assert (expired_bar.value, expired_bar.bar_color) == (0, "light")
    cut_bar = seats._gauges[("cut", catalog.CONCURRENT_USER)][0]
    assert (cut_bar.value, cut_bar.max, cut_bar.bar_color) == (1, 1, "danger")  # full, red
    assert seats.seats_fold.title == (
        "Seats of 17 pools: 2 nearly full, 1 busy, 1 seats unknown, 1 without seats"
    )
    # a gauge's click filters, the fold's title says which product's types are chosen (as text)
    seats.buttons[("R&D <beta>", catalog.CONCURRENT_USER)].clicks += 1
    assert options.types_fold.title == (
        "License types of 10 products · chosen for R&amp;D &lt;beta&gt;"
    )
    for product in products[:4]:
        options.product_inputs[product].value = [catalog.NAMED_USER]
    assert options.types_fold.title.endswith("chosen for tool 0, tool 1, tool 2 and 2 more")


def nowrap(note: str) -> str:
    """A gauge's note as drawn: kept on one line."""
    return f'<span style="white-space: nowrap">{note}</span>'


def test_a_gauge_says_when_its_pool_expired_or_expires_soon(sqlite_engine, frozen, notes):
    now = frozen.now
    catalog.add_pool(sqlite_engine, "old", catalog.CONCURRENT_USER, 0, now - timedelta(days=400))
    catalog.add_pool(sqlite_engine, "soon", catalog.CONCURRENT_USER, 5, now + timedelta(days=9))
    catalog.add_pool(sqlite_engine, "later", catalog.CONCURRENT_USER, 5, now + timedelta(days=90))
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.set_zone(ZoneInfo("Europe/Paris"))
    tab.explorer.run()
    lines = {key[0]: gauge[1].value for key, gauge in tab.seats._gauges.items()}
    # the frozen clock is 2026-03-02 10:00 UTC: 11:00 in Paris
    assert lines == {
        "old": "<b>0</b> / 0 seats in use · " + nowrap("expired 2025-01-26 11:00"),
        "soon": "<b>0</b> / 5 seats in use · " + nowrap("expires 2026-03-11 11:00"),
        "later": "<b>0</b> / 5 seats in use",
    }
    assert fmt.expiry_note(pd.NaT, None) == ""
    paris_midnight = pd.Timestamp("2026-03-20 23:00", tz="UTC")  # the end of 20 March, Paris
    assert fmt.expiry_note(paris_midnight, ZoneInfo("Europe/Paris"), now) == "expires 2026-03-21"


def test_a_gauge_says_when_some_of_its_seats_expire(sqlite_engine, frozen, notes):
    listing = (
        "Feature  Version  #licenses  Expires  Vendor\n"
        "solver  1.0  3  15-mar-2026  acme\n"
        "solver  1.0  4  20-mar-2026  acme\n"
        "mesher  1.0  1  5-mar-2026  acme\n"
        "mesher  1.0  2  permanent  acme\n"
    )
    import_lmstat_i(sqlite_engine, listing, server="lic1", timezone="UTC")
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    tab.explorer.set_zone(ZoneInfo("Europe/Paris"))  # the browser says its zone later
    lines = {key[0]: gauge[1].value for key, gauge in tab.seats._gauges.items()}
    # the frozen clock is 2026-03-02 10:00 UTC; the days end at midnight UTC, 01:00 in Paris
    assert lines["solver"] == (
        "<b>0</b> / 7 seats in use · "
        + nowrap("3 seats expire 2026-03-16 01:00")
        + " · "
        + nowrap("expires 2026-03-21 01:00")
    )
    assert lines["mesher"] == "<b>0</b> / 3 seats in use · " + nowrap(
        "1 seat expires 2026-03-06 01:00"
    )


class SeatsLevel:
    @staticmethod
    def of(in_use: int, seats: int) -> str:
        from licusage.app.views import SeatsView

        return SeatsView.level(in_use, seats)


def test_logout_button_needs_selection_and_admin(sqlite_engine, ids, notes):
    admin = make_tab(sqlite_engine, notes)
    admin.explorer.run()
    assert admin.results.logout_button.disabled
    admin.results.table.selection = [0, 1]
    assert len(admin.explorer.selected_ids) == 2
    assert not admin.results.logout_button.disabled
    viewer = make_tab(sqlite_engine, notes, role=VIEWER, user="vic")
    viewer.explorer.run()
    viewer.results.table.selection = [0]
    assert viewer.results.logout_button.disabled


def test_select_all_matching_spans_pages(sqlite_engine, ids, notes, monkeypatch):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.page_size = 2
    tab.explorer.run()
    assert tab.results.select_all_button.label == "Select all 6 matching"
    tab.results.select_all_button.clicks += 1
    assert tab.explorer.all_matching
    assert tab.explorer.selection_ids() == sorted(ids.values())  # listed by the database
    assert tab.results.table.selection == [0, 1]
    assert tab.results.selection_text.value == "<b>All 6 matching sessions selected</b>"
    tab.results.next_button.clicks += 1
    assert tab.results.table.selection == [0, 1]  # ticked on every page
    tab.results.clear_button.clicks += 1
    assert tab.explorer.selected_ids == []
    assert tab.results.logout_button.disabled


def test_logout_dialog_then_logout(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    in_use_before = tab.explorer.pools.set_index(["product", "license_type"])["in_use"]
    tab.explorer.select([ids["bob.o'brien"], ids["erin.smith"]])
    tab.results.logout_button.clicks += 1
    dialog = tab.dialog
    assert dialog.modal.open
    text = dialog.message.value
    assert "Log out 2 sessions of 2 users (bob.o'brien, erin.smith)?" in text
    assert f"<td>{ids['erin.smith']}</td>" in text  # few sessions: listed with their ids
    assert f"{CM} · {catalog.CONCURRENT_USER}: 2" in text
    dialog.logout_button.clicks += 1
    assert not dialog.modal.open
    assert "bob.o'brien" not in users_in(tab)
    assert "erin.smith" not in users_in(tab)
    ended = queries.sessions_by_id(sqlite_engine, [ids["bob.o'brien"], ids["erin.smith"]])
    assert set(ended["ended_by"]) == {ME}
    in_use = tab.explorer.pools.set_index(["product", "license_type"])["in_use"]
    assert in_use[(CM, catalog.CONCURRENT_USER)] == in_use_before[(CM, catalog.CONCURRENT_USER)] - 2
    assert ("success", "Logged out 2 sessions.") in notes
    audit = queries.audit_log(sqlite_engine, actor=ME)
    assert set(audit["session_id"]) == {ids["bob.o'brien"], ids["erin.smith"]}


def test_cancel_changes_nothing(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    tab.explorer.select([ids["carol.100%"]])
    tab.results.logout_button.clicks += 1
    tab.dialog.cancel_button.clicks += 1
    assert not tab.dialog.modal.open
    assert "carol.100%" in users_in(tab)
    assert len(queries.session_usage(sqlite_engine)) == len(ids)
    assert queries.audit_log(sqlite_engine).empty


def test_admin_spares_own_session_and_reports_already_ended(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    sessions.end(sqlite_engine, ids["alice.named"])  # ended elsewhere after the Run
    tab.explorer.select([ids[ME], ids["alice.named"], ids["carol.100%"]])
    preview = tab.explorer.preview_logout()
    assert preview.spared == (ids[ME],)
    assert ME not in preview.users
    result = tab.explorer.logout(preview.session_ids)
    assert result.logged_out == (ids["carol.100%"],)
    assert result.already_ended == (ids["alice.named"],)
    assert ME in users_in(tab)
    assert "alice.named" not in users_in(tab)
    message = notes[-1][1]
    assert "1 had already ended" in message


def test_the_dialog_says_when_a_license_server_has_no_removal_command(sqlite_engine, notes):
    snapshot = read_text(str(FLEXLM_FIXTURES / "lmstat-1.txt"))
    import_lmstat(sqlite_engine, snapshot, server="lic1", source="lmstat-1.txt")
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    on_lic1 = queries.session_usage(sqlite_engine, source="lic1")["session_id"].tolist()
    assert len(on_lic1) == 2  # ana and bo
    tab.explorer.select(on_lic1)
    tab.results.logout_button.clicks += 1
    message = tab.dialog.message.value
    assert "2 sessions of lic1: removed on the license server first." in message
    assert "<b>lic1 has no removal command: its sessions stay logged in</b>" in message


def test_dialog_decides_own_sessions_from_the_store_by_identity(sqlite_engine, ids, notes):
    """Signed in as ``Ada.Admin``: the table says ``ada.admin``, the store says it is the same
    user, and the dialog spares that session as the logout does (issue 10)."""
    tab = make_tab(sqlite_engine, notes, user="Ada.Admin")
    tab.explorer.run()
    sessions.end(sqlite_engine, ids["alice.named"])  # ended elsewhere after the Run
    tab.explorer.select([ids[ME], ids["alice.named"], ids["carol.100%"]])
    tab.results.logout_button.clicks += 1
    preview = tab.dialog.preview
    assert preview.spared == (ids[ME],)
    assert preview.session_ids == tuple(sorted([ids["alice.named"], ids["carol.100%"]]))
    text = tab.dialog.message.value
    assert "Log out 1 session of 1 user (carol.100%)?" in text
    assert "Your own 1 session stays logged in." in text
    assert "1 session has already ended." in text
    assert f"<td>{ids[ME]}</td>" not in text
    tab.dialog.logout_button.clicks += 1
    assert notes[-1] == (
        "success",
        f"Logged out 1 session. 1 had already ended ({ids['alice.named']}).",
    )
    assert ME in users_in(tab)


def test_dialog_counts_many_sessions_instead_of_listing_them(
    sqlite_engine, ids, notes, monkeypatch
):
    from licusage.app import views

    monkeypatch.setattr(views, "FEW_SESSIONS", 2)
    tab = make_tab(sqlite_engine, notes)
    tab.explorer.run()
    tab.explorer.select([ids["bob.o'brien"], ids["erin.smith"], ids["carol.100%"]])
    tab.results.logout_button.clicks += 1
    text = tab.dialog.message.value
    assert "Log out 3 sessions of 3 users (bob.o'brien, carol.100%, erin.smith)?" in text
    assert "<table" not in text


def test_viewer_forced_logout_is_refused_and_audited(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes, role=VIEWER, user="vic")
    tab.explorer.run()
    tab.explorer.select([ids["carol.100%"]])
    tab.results.logout_button.disabled = False  # what a tampered browser can do
    tab.results.logout_button.clicks += 1
    assert any("may not log sessions out" in m for m in notes.errors())
    assert "carol.100%" in set(queries.session_usage(sqlite_engine)["user"])
    audit = queries.audit_log(sqlite_engine, actor="vic")
    assert list(audit["action"]) == ["logout_refused"]


def test_csv_holds_the_whole_result_as_the_cli_writes_it(sqlite_engine, sqlite_url, ids, notes):
    from click.testing import CliRunner

    from licusage.cli import main

    tab = make_tab(sqlite_engine, notes)
    tab.explorer.page_size = 2
    tab.options.user_input.value = "a"
    tab.explorer.run()
    text = tab.results._csv().read()
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == tab.explorer.total > 2
    assert list(frame.columns[:6]) == [
        "session_id",
        "user",
        "host",
        "started_at",
        "last_activity",
        "idle",
    ]
    assert frame.loc[frame["user"] == ME, "idle"].item() == 65 * 60
    cli = CliRunner().invoke(
        main, ["sessions", "--db", sqlite_url, "--user", "a", "--format", "csv"]
    )
    assert cli.exit_code == 0
    assert text == cli.stdout  # the same file


def test_unreachable_database_then_recovery(tmp_path, sqlite_url, frozen, notes):
    down = db.create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    tab = make_tab(down, notes)
    assert tab.explorer.run() is False
    assert notes.errors()
    assert "database is unavailable" in notes.errors()[-1]
    # a store whose file appears later (a mounted volume coming back): the same page recovers
    missing = tmp_path / "later" / "store.sqlite"
    later = db.create_engine(f"sqlite:///{missing}")
    tab = make_tab(later, notes)
    assert tab.explorer.run() is False
    engine = db.connect(sqlite_url)
    seed(engine, frozen)
    engine.dispose()
    missing.parent.mkdir()
    shutil.copy(sqlite_url.removeprefix("sqlite:///"), missing)
    assert tab.explorer.run() is True
    assert len(users_in(tab)) == 6
    assert list(tab.options.product_inputs) == [CM, RO]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0m"), (59, "0m"), (61, "1m"), (7500, "2h 05m"), (86_400 + 4 * 3600, "1d 04h")],
)
def test_format_duration(seconds, text):
    assert fmt.format_duration(timedelta(seconds=seconds)) == text
    assert fmt.format_duration(float(seconds)) == text


def test_identity_rules():
    assert anonymous_identity("127.0.0.1", allow_remote=False).role == ADMIN
    assert anonymous_identity("::1", allow_remote=False).role == ADMIN
    assert anonymous_identity("10.1.2.3", allow_remote=False).role == VIEWER
    assert anonymous_identity("10.1.2.3", allow_remote=True).role == ADMIN
    env = {"LICUSAGE_ADMIN_USERS": "ann, bo", "LICUSAGE_ADMIN_GROUPS": "license-admins"}
    assert mapped_role("bo", None, env) == ADMIN
    assert mapped_role("cy", {"groups": ["staff", "license-admins"]}, env) == ADMIN
    assert mapped_role("cy", {"groups": ["staff"]}, env) == VIEWER
    assert mapped_role("cy", None, {"LICUSAGE_DEFAULT_ROLE": "root"}) == VIEWER


@pytest.mark.parametrize(
    "options",
    [
        ServeOptions(address="0.0.0.0"),
        ServeOptions(address="192.168.1.5"),
        ServeOptions(port=70_000),
    ],
)
def test_unsafe_serve_options_are_refused(options):
    with pytest.raises(InvalidInput):
        check_options(options)


def test_safe_serve_options():
    check_options(ServeOptions())
    check_options(ServeOptions(address="0.0.0.0", auth=True))
    check_options(ServeOptions(address="0.0.0.0", allow_unauthenticated_remote=True))


def test_demo_fills_only_an_empty_store(sqlite_url):
    assert fill_demo(sqlite_url) is True
    engine = db.connect(sqlite_url)
    try:
        count = len(queries.session_usage(engine))
        assert count > 0
        assert fill_demo(sqlite_url) is False  # a store with sessions is left as it is
        assert len(queries.session_usage(engine)) == count
    finally:
        engine.dispose()


def test_pages_and_sorts_are_read_by_the_database(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    ex = tab.explorer
    ex.page_size = 2
    assert ex.run()
    everyone = list(queries.session_usage(sqlite_engine)["session_id"])
    assert tab.results.page_text.value.startswith("Page 1 of 3")
    assert tab.results.previous_button.disabled
    seen = []
    for _ in range(3):
        seen += list(tab.results.table.value.index)
        tab.results.next_button.clicks += 1
    assert seen == everyone
    assert ex.page == 3
    assert tab.results.next_button.disabled
    # a tick on page 3, another on page 1: both stay selected
    tab.results.table.selection = [0]
    ex.go_to_page(1)
    tab.results.table.selection = [1]
    assert sorted(ex.selected_ids) == sorted([everyone[4], everyone[1]])
    # a click on the User header sorts the whole result, in the database
    tab.results.table.sorters = [{"field": "User", "dir": "desc"}]
    assert ex.page == 1
    expected = sorted(ids, key=str.casefold, reverse=True)[:2]
    assert list(tab.results.table.value["User"]) == expected
    assert notes.errors() == []


def test_refresh_keeps_the_selection_and_shows_new_sessions(sqlite_engine, ids, notes, frozen):
    tab = make_tab(sqlite_engine, notes)
    ex = tab.explorer
    assert ex.run()
    tab.results.table.selection = [0, 2]
    chosen = list(ex.selected_ids)
    sessions.login(sqlite_engine, "zed", {RO: catalog.CONCURRENT_USER})
    assert ex.refresh()
    assert ex.total == len(ids) + 1
    assert ex.selected_ids == chosen
    assert sorted(tab.results.table.value.index[tab.results.table.selection]) == sorted(chosen)
    assert tab.results.stamp.value.startswith("as of ")


def test_empty_result_says_so(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    tab.options.user_input.value = "nobody-by-that-name"
    assert tab.explorer.run()
    assert tab.results.summary.value == "No active sessions match"


def test_url_parameters_round_trip(sqlite_engine, ids, notes):
    ex = SessionExplorer(sqlite_engine, Identity(ME, ADMIN, signed_in=False), notify=notes)
    assert ex.apply_query_params({"user": "smith", CM: "Concurrent User", "idle_over": "2h"})
    assert ex.filters() == {
        "user": "smith",
        "license_types": {CM: ["Concurrent User"]},
        "idle_over": timedelta(hours=2),
        "host": None,
    }
    assert ex.query_params() == {"user": "smith", CM: "Concurrent User", "idle_over": "2h"}
    assert not ex.apply_query_params({"idle_over": "5", CM: "Nope"})
    assert ex.idle_over == ""
    assert ex.license_types == {}
    assert len([n for n in notes if n[0] == "warning"]) == 2


def test_the_browser_zone_sends_the_rows_again_only_when_it_changes_their_times(
    sqlite_engine, ids, notes
):
    from zoneinfo import ZoneInfo

    tab = make_tab(sqlite_engine, notes)
    ex = tab.explorer
    ex.set_zone(ZoneInfo("UTC"))
    assert ex.run()
    shown = tab.results.table.value
    utc_started = list(shown["Started"])
    stamps = []
    ex.param.watch(lambda _e: stamps.append(tab.results.stamp.value), "result")
    ex.set_zone(ZoneInfo("Etc/UTC"))  # another name, the same times: the drawn rows stay
    assert tab.results.table.value is shown
    assert stamps  # the "as of" stamp was shown again in the zone
    ex.set_zone(ZoneInfo("Asia/Tokyo"))  # UTC+9: the rows are shown again, in that zone
    assert tab.results.table.value is not shown
    tokyo = pd.to_datetime(pd.Series(utc_started)) + pd.Timedelta(hours=9)
    assert list(tab.results.table.value["Started"]) == list(tokyo.dt.strftime("%Y-%m-%d %H:%M"))


def test_the_page_opens_with_its_rows_then_its_counts(sqlite_engine, ids, notes):
    tab = make_tab(sqlite_engine, notes)
    ex = tab.explorer
    assert ex.open()
    assert len(tab.results.table.value) == 6
    assert run_coroutine(ex.finish_open())
    assert (ex.total, ex.counting) == (6, False)
    assert ex.summary == "6 sessions of 6 distinct users"
    assert not run_coroutine(ex.finish_open())  # counted once


def test_a_read_started_later_is_shown_even_when_an_earlier_one_was_shown_first(
    sqlite_engine, ids, notes, monkeypatch
):
    """A Run, then a second Run (a seat-gauge click, say) while the first is still reading:
    the first shows its rows, then the second's rows replace them; never the other way."""
    ex = SessionExplorer(sqlite_engine, Identity(ME, ADMIN, signed_in=False), notify=notes)
    first_shown = threading.Event()
    read = ex._read

    def read_slowly_for_carol(view, counts, pools):
        if view.filters["user"] == "carol":  # the second Run's read ends after the first's
            assert first_shown.wait(30)
        return read(view, counts, pools)

    monkeypatch.setattr(ex, "_read", read_slowly_for_carol)

    async def two_runs() -> list[str]:
        ex.user = "alice"
        first = asyncio.create_task(ex.run_async())
        await asyncio.sleep(0)  # the first read has started
        ex.user = "carol"
        second = asyncio.create_task(ex.run_async())
        assert await first
        shown = sorted(ex.result["User"])
        first_shown.set()
        assert await second
        return shown

    assert run_coroutine(two_runs()) == ["alice.floating", "alice.named"]
    assert sorted(ex.result["User"]) == ["carol.100%"]
    assert ex.total == 1
