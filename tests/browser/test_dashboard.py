"""The seed's procedures in Chromium against a real ``licusage serve --auth`` on a real store."""

from __future__ import annotations

import re

import pytest

from licusage import queries
from licusage.app.auth import WRONG_PASSWORD
from tests.browser.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    expect,
    free_port,
    sign_in,
    tick_row,
    wait_for_dashboard,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_dashboard")]


@pytest.fixture(scope="module")
def server(server_factory, seeded_store):
    return server_factory(seeded_store, "--auth", "--cookie-secret", "browser-test-secret")


COUNT_LINE = re.compile(r"\d+ sessions? of \d+ distinct users?|^No active sessions match")


def rows(page):
    return page.locator(".tabulator-row")


def row_of(page, user: str):
    return rows(page).filter(has=page.locator("[tabulator-field=User]", has_text=user))


def shown_users(page) -> list[str]:
    return sorted(page.locator(".tabulator-row [tabulator-field=User]").all_inner_texts())


def run(page, expected_count: int | None = None) -> None:
    """Click Run and wait for the count line (and, if given, that many rows)."""
    line = page.locator(".licusage-count")
    expect()(line).to_have_text(COUNT_LINE)  # what the page opened with is drawn, counted
    # the Run replaces the rows shown before: mark those, and wait until none is left, or a
    # click on an old row's checkbox can be lost (seen under load)
    page.evaluate(
        "() => document.querySelectorAll('.tabulator-row').forEach("
        "(row) => row.setAttribute('data-before-run', ''))"
    )
    page.get_by_role("button", name="Run").click()
    expect()(page.locator(".tabulator-row[data-before-run]")).to_have_count(0)
    page.wait_for_function("() => Bokeh.documents.every((doc) => doc.is_idle)")
    expect()(line).to_have_text(COUNT_LINE)
    if expected_count is not None:
        expect()(line).to_have_text(
            re.compile(rf"^{expected_count} sessions? of|^No active sessions match")
        )
        expect()(rows(page)).to_have_count(expected_count)


def notification(page, text):
    return page.locator(".notyf__message", has_text=text)


def active_users(engine) -> set[str]:
    return set(queries.session_usage(engine)["user"])


def server_has_filter(page, fragment: str) -> None:
    """Wait until the page echoes the filter the server holds (the notebook call line, behind
    its "Use in a notebook" disclosure)."""
    expect()(page.locator(".licusage-filter code", has_text=fragment)).to_have_count(1)


def set_user(page, text: str) -> None:
    page.get_by_label("User").fill(text)
    shown = f"user={text!r}" if len(text) <= 60 else f"user={text[:60]!r}…"
    server_has_filter(page, shown)


def pick_types(page, product: str, license_type: str) -> None:
    """Choose `license_type` in the multi-select labelled `product`."""
    widget = page.locator(".bk-input-group", has=page.get_by_text(product, exact=True))
    widget.locator("input").first.click()
    page.get_by_role("option", name=license_type).first.click()
    page.keyboard.press("Escape")
    server_has_filter(page, f"{product!r}: [{license_type!r}]")


def test_view_procedure_user_and_license_type(server, browser_page):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    set_user(page, "alice")
    pick_types(page, "Case Management", "Named User")
    run(page, expected_count=1)
    assert shown_users(page) == ["alice.named"]
    row = row_of(page, "alice.named")
    expect()(row.locator("[tabulator-field='Case Management']")).to_have_text("Named User")
    headers = page.locator(".tabulator-col-title").all_inner_texts()
    for title in ("User", "Host", "Started", "Last Activity", "Idle", "Case Management"):
        assert title in headers
    # the idle column reads like "6h 00m"
    assert re.fullmatch(r"\d+h \d\dm", row.locator("[tabulator-field=Idle]").inner_text())
    assert browser_page.outside == []


def test_logout_procedure(server, browser_page, store):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    run(page)
    targets = ["bob.o'brien", "erin.smith"]
    ids = {
        user: int(sid)
        for sid, user in queries.session_usage(store)[["session_id", "user"]].to_numpy()
        if user in targets
    }
    for ticked, user in enumerate(targets, 1):
        tick_row(page, row_of(page, user), f"{ticked} selected")
    page.get_by_role("button", name="Logout Session").click()
    dialog = page.get_by_role("dialog")
    expect()(dialog).to_be_visible()
    expect()(
        page.get_by_text("Log out 2 sessions of 2 users (bob.o'brien, erin.smith)?")
    ).to_be_visible()
    expect()(page.get_by_text("Case Management · Concurrent User: 2")).to_be_visible()
    page.get_by_role("button", name="Logout", exact=True).click()
    for user in targets:
        expect()(row_of(page, user)).to_have_count(0)
    expect()(notification(page, "Logged out 2 sessions.")).to_be_visible()
    ended = queries.sessions_by_id(store, ids.values())
    assert set(ended["ended_by"]) == {ADMIN}
    assert ended["ended_at"].notna().all()
    audit = queries.audit_log(store, actor=ADMIN)
    assert set(audit.loc[audit["action"] == "end_session", "session_id"]) >= set(ids.values())
    # the admin goes on: another session can be selected and logged out
    tick_row(page, row_of(page, "alice.floating"), "1 selected")
    expect()(page.get_by_role("button", name="Logout Session")).to_be_enabled()


def test_cancel_changes_nothing(server, browser_page, store):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    run(page)
    before = active_users(store)
    tick_row(page, row_of(page, "carol.100%"), "1 selected")
    page.get_by_role("button", name="Logout Session").click()
    expect()(page.get_by_text("Log out 1 session of 1 user (carol.100%)?")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect()(page.get_by_role("dialog")).to_be_hidden()
    expect()(row_of(page, "carol.100%")).to_have_count(1)
    assert active_users(store) == before


def test_admins_own_session_is_spared(server, browser_page, store):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    set_user(page, ADMIN)
    run(page, expected_count=1)
    tick_row(page, row_of(page, ADMIN), "1 selected")
    page.get_by_role("button", name="Logout Session").click()
    expect()(page.get_by_text("Your own 1 session stays logged in.")).to_be_visible()
    expect()(page.get_by_role("button", name="Logout", exact=True)).to_be_disabled()
    page.get_by_role("button", name="Cancel").click()
    assert ADMIN in active_users(store)


def test_viewer_cannot_log_out(server, browser_page, store):
    page = browser_page()
    sign_in(page, server, VIEWER, VIEWER_PASSWORD)
    expect()(page.get_by_text(f"{VIEWER} (viewer)")).to_be_visible()
    run(page)
    tick_row(page, row_of(page, "dora.named"), "1 selected")
    button = page.get_by_role("button", name="Logout Session")
    expect()(button).to_be_disabled()
    # a tampered browser: enable the button in BokehJS's model and click it
    page.evaluate(
        """() => {
          for (const doc of Bokeh.documents) {
            for (const model of doc._all_models.values()) {
              if (model.label === 'Logout Session') { model.disabled = false; }
            }
          }
        }"""
    )
    expect()(button).to_be_enabled()
    button.click()
    expect()(notification(page, "may not log sessions out")).to_be_visible()
    assert "dora.named" in active_users(store)
    refused = wait_until(
        lambda: (lambda a: a[a["action"] == "logout_refused"])(
            queries.audit_log(store, actor=VIEWER)
        ).shape[0]
    )
    assert refused >= 1


@pytest.mark.parametrize(
    "text",
    ["'\"; DROP TABLE sessions; --", "%", "100%", "_", "x" * 100_000],
    ids=["quotes", "percent", "literal-percent", "underscore", "very-long"],
)
def test_bad_input_in_user_is_just_a_filter(server, browser_page, text):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    set_user(page, text)
    expected = ["carol.100%"] if text in ("%", "100%") else []
    run(page, expected_count=len(expected))
    assert shown_users(page) == expected
    assert page.locator(".notyf__toast--error").count() == 0


def test_unreachable_database_is_a_notification(server_factory, browser_page):
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/licusage"
    server = server_factory(down, panel=True)
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    page.get_by_role("button", name="Run").click()
    expect()(notification(page, "database is unavailable").first).to_be_visible()
    assert "Traceback" not in page.content()
    assert browser_page.outside == []


def test_seat_gauge_filters_and_select_all_matching(server, browser_page, store):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    run(page)
    expected = sorted(
        queries.session_usage(store, license_types={"Reports Only": ["Concurrent User"]})["user"]
    )
    page.get_by_role("button", name="Reports Only · Concurrent User").click()
    expect()(rows(page)).to_have_count(len(expected))
    assert shown_users(page) == expected
    page.get_by_role("button", name=f"Select all {len(expected)} matching").click()
    expect()(page.get_by_text(f"All {len(expected)} matching sessions selected")).to_be_visible()
    expect()(page.locator(".tabulator-row.tabulator-selected")).to_have_count(len(expected))
    expect()(page.get_by_role("button", name="Logout Session")).to_be_enabled()


def test_sign_in_page_is_local_and_refuses_a_wrong_password(server, browser_page):
    page = browser_page()
    page.goto(server.url)
    page.locator("#username").fill(ADMIN)
    page.locator("#password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect()(page.get_by_role("alert")).to_have_text(WRONG_PASSWORD)
    assert page.get_by_role("button", name="Run").count() == 0
    page.locator("#username").fill(ADMIN)
    page.locator("#password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_for_dashboard(page)
    assert browser_page.outside == []
