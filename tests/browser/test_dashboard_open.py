"""Issue 12 in Chromium: results on open, the filter in the URL, selection right after results,
narrow windows, auto-refresh, the CSV download, the dialog, the Host filter and ID column."""

from __future__ import annotations

import re
import struct
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from licusage import catalog, queries, sessions
from licusage.cli import main
from tests.browser.conftest import expect, tick_row, wait_for_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_dashboard_open")]

CM = "Case Management"
COUNT = re.compile(r"\d+ sessions? of \d+ distinct users?|^No active sessions match")


@pytest.fixture(scope="module")
def server(server_factory, seeded_store):
    return server_factory(seeded_store)  # loopback: no sign-in, the OS user acts as admin


def rows(page):
    return page.locator(".tabulator-row")


def users_shown(page) -> list[str]:
    return sorted(page.locator(".tabulator-row [tabulator-field=User]").all_inner_texts())


def count_line(page):
    return page.locator(".licusage-count")


def counted(page, sessions_count: int) -> None:
    """Wait until the count line says `sessions_count` sessions."""
    pattern = rf"^{sessions_count} sessions? of" if sessions_count else "^No active sessions"
    expect()(count_line(page)).to_have_text(re.compile(pattern))


def type_filter(page, label: str, value: str, echo: str) -> None:
    """Type `value` into the `label` field until the server echoes it in the notebook line.

    A value typed in the first moments after the page appears is sometimes not received by
    the server (see the issue 12 notes); a person sees the echo missing and types again."""
    field = page.get_by_role("textbox", name=label)
    code = page.locator(".licusage-filter code", has_text=echo)
    for _ in range(4):
        field.fill(value)
        field.press("Enter")
        try:
            expect()(code).to_have_count(1, timeout=10_000)
            return
        except AssertionError:
            field.fill("")
    expect()(code).to_have_count(1)


def test_page_opens_with_the_filter_of_its_url_and_back_works(server, browser_page, store):
    page = browser_page()
    query = urllib.parse.urlencode({"user": "alice", CM: "Named User"})
    page.goto(f"{server.url}?{query}")
    expected = queries.session_usage(store, user="alice", license_types={CM: ["Named User"]})
    expect()(rows(page)).to_have_count(len(expected))  # no Run needed
    assert users_shown(page) == sorted(expected["user"])
    counted(page, len(expected))
    wait_for_dashboard(page)
    expect()(page.get_by_role("textbox", name="User")).to_have_value("alice")
    # a new filter, Run: the URL follows
    type_filter(page, "User", "smith", "user='smith'")
    page.get_by_role("button", name="Run").click()
    smiths = queries.session_usage(store, user="smith", license_types={CM: ["Named User"]})
    counted(page, len(smiths))
    page.wait_for_url(re.compile(r"user=smith"))
    # the link reproduces the view in a fresh browser session
    other = browser_page()
    other.goto(page.url)
    counted(other, len(smiths))
    expect()(other.get_by_role("textbox", name="User")).to_have_value("smith")
    # Back: the previous filter and its rows
    page.go_back()
    page.wait_for_url(re.compile(r"user=alice"))
    counted(page, len(expected))
    expect()(page.get_by_role("textbox", name="User")).to_have_value("alice")
    assert users_shown(page) == sorted(expected["user"])


def test_a_tick_right_after_the_results_appear_is_never_lost(server, browser_page):
    for _ in range(5):
        page = browser_page()
        page.goto(server.url)
        first = rows(page).first.locator("input[type=checkbox]")
        first.click()  # as soon as the first row can be clicked
        expect()(page.get_by_text("1 selected", exact=True)).to_be_visible()
        expect()(count_line(page)).to_have_text(COUNT)  # the counts arrived after the tick
        wait_for_dashboard(page)
        expect()(first).to_be_checked()
        expect()(page.get_by_text("1 selected", exact=True)).to_be_visible()
        page.context.close()


@pytest.mark.parametrize("width", [800, 1280])
def test_narrow_windows_fit(server, browser_page, width, tmp_path):
    page = browser_page(width=width, height=900)
    page.goto(server.url)
    expect()(rows(page).first).to_be_visible()
    wait_for_dashboard(page)
    shot = tmp_path / f"page-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    png_width = struct.unpack(">I", shot.read_bytes()[16:20])[0]
    assert png_width == width  # the page never needs to scroll sideways
    logout = page.get_by_role("button", name="Logout Session")
    box = logout.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width  # the whole button is on screen: the bar wraps
    # every product column exists; the table scrolls inside itself if they do not all fit
    headers = page.locator(".tabulator-col-title").all_inner_texts()
    assert {"ID", "User", "Host", CM, "Reports Only"} <= set(headers)
    table = page.locator(".tabulator").first.bounding_box()
    assert table is not None
    assert table["x"] + table["width"] <= width


def test_host_filter_id_column_and_empty_result(server, browser_page, store):
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    expected = queries.session_usage(store, host="ws-bob")
    type_filter(page, "Host", "ws-bob", "host='ws-bob'")
    page.get_by_role("button", name="Run").click()
    counted(page, len(expected))
    ids = page.locator(".tabulator-row [tabulator-field=ID]").all_inner_texts()
    assert sorted(int(i) for i in ids) == sorted(expected["session_id"])
    expect()(count_line(page)).to_have_text(f"{len(expected)} session of 1 distinct user")
    type_filter(page, "Host", "no-such-host", "host='no-such-host'")
    page.get_by_role("button", name="Run").click()
    expect()(count_line(page)).to_have_text("No active sessions match")
    expect()(rows(page)).to_have_count(0)


def test_dialog_lists_the_sessions_and_escape_closes_it(server, browser_page, store):
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    target = queries.session_usage(store, user="carol")
    row = rows(page).filter(has=page.locator("[tabulator-field=User]", has_text="carol"))
    row.locator("input[type=checkbox]").click()
    page.get_by_role("button", name="Logout Session").click()
    dialog = page.get_by_role("dialog")
    expect()(dialog).to_be_visible()
    expect()(page.get_by_text("Log out 1 session of 1 user (carol.100%)?")).to_be_visible()
    cell = page.locator(".licusage-targets td", has_text=str(int(target["session_id"].item())))
    expect()(cell).to_have_count(1)
    page.keyboard.press("Escape")
    expect()(dialog).to_be_hidden()
    assert "carol.100%" in set(queries.session_usage(store)["user"])


def test_csv_download_is_the_cli_file(server, browser_page, seeded_store, store):
    page = browser_page()
    page.goto(f"{server.url}?user=a")
    counted(page, len(queries.session_usage(store, user="a")))
    wait_for_dashboard(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    downloaded = Path(info.value.path()).read_text(encoding="utf-8")
    cli = CliRunner().invoke(
        main, ["sessions", "--db", seeded_store, "--user", "a", "--format", "csv"]
    )
    assert cli.exit_code == 0

    # the idle column is measured when each file is written: compare the rest exactly
    def without_idle(text: str) -> list[list[str]]:
        lines = [line.split(",") for line in text.strip().splitlines()]
        position = lines[0].index("idle")
        return [line[:position] + line[position + 1 :] for line in lines]

    assert without_idle(downloaded) == without_idle(cli.stdout)


def test_auto_refresh_shows_new_sessions_and_keeps_the_selection(server, browser_page, store):
    page = browser_page()
    page.goto(server.url)
    before = len(queries.session_usage(store))
    counted(page, before)
    wait_for_dashboard(page)
    erin = rows(page).filter(has=page.locator("[tabulator-field=User]", has_text="erin.smith"))
    tick_row(page, erin, "1 selected")
    stamp = page.get_by_text(re.compile(r"^as of \d\d:\d\d:\d\d$"))
    first_stamp = stamp.inner_text()
    page.get_by_label("Auto-refresh").select_option("10 s")
    # a login the page did not cause: the next refresh shows it, without a Run
    late = sessions.login(store, "fred.late", {CM: catalog.CONCURRENT_USER}, host="ws-fred")
    try:
        counted(page, before + 1)
        expect()(rows(page).filter(has_text="fred.late")).to_have_count(1)
        assert stamp.inner_text() != first_stamp
        expect()(erin.locator("input[type=checkbox]")).to_be_checked()
        expect()(page.get_by_text("1 selected", exact=True)).to_be_visible()
        # off again: no more refreshes (a further login stays unseen until Run)
        page.get_by_label("Auto-refresh").select_option("off")
        wait_for_dashboard(page)
        other = sessions.login(store, "gus.late", {CM: catalog.CONCURRENT_USER}, host="ws-gus")
        page.wait_for_timeout(12_000)
        counted(page, before + 1)
        sessions.end(store, other.session_id)
    finally:
        sessions.end(store, late.session_id)
