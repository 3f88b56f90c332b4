"""The tabs other than Sessions in Chromium (issue 10, "one dashboard lifecycle"): each is built
and read when first shown, draws what it read at its size, and a seat gauge's click filters."""

from __future__ import annotations

import re

import pytest

from licusage import actions, queries
from tests.browser.conftest import expect, wait_for_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_tabs")]

CM, RO = "Case Management", "Reports Only"


@pytest.fixture(scope="module")
def server(server_factory, seeded_store):
    return server_factory(seeded_store)  # loopback: no sign-in, the OS user acts as admin


def open_tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).click()
    page.wait_for_function("() => Bokeh.documents.every((doc) => doc.is_idle)")


def drawn_sizes(page) -> list[tuple[float, float]]:
    """Width and height of every Bokeh plot canvas on screen."""
    boxes = [c.bounding_box() for c in page.locator(".bk-Canvas").all()]
    return [(b["width"], b["height"]) for b in boxes if b is not None]


def test_each_tab_reads_when_first_shown_and_draws_at_its_size(server, browser_page, store):
    ended = int(queries.session_usage(store, user="erin.smith")["session_id"].iloc[0])
    assert actions.logout_sessions(store, [ended], actor="tab.tester").logged_out == (ended,)
    pools = queries.pool_usage(store)
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)

    open_tab(page, "Utilisation")
    expect()(page.get_by_text("pools reached their seat count")).to_be_visible()
    peaks = page.locator(".tabulator-row", has_text=f"{RO} / Concurrent User")
    expect()(peaks).to_have_count(1)
    # one plot per pool (460 x 200) and the heat map (920 x 280), each drawn at its size:
    # none laid out at zero size while hidden
    expect()(page.locator(".bk-Canvas")).to_have_count(len(pools) + 1)
    sizes = drawn_sizes(page)
    assert sum(w >= 400 and h >= 150 for w, h in sizes) == len(pools) + 1, sizes

    open_tab(page, "Audit")
    audit_rows = page.locator(".tabulator-row", has_text="tab.tester")
    expect()(audit_rows).to_have_count(1)
    expect()(audit_rows).to_contain_text("erin.smith")
    expect()(page.get_by_text(re.compile(r"1 audit event,"))).to_be_visible()

    open_tab(page, "Alerts")
    expect()(page.get_by_text("No alert has fired", exact=False)).to_be_visible()

    open_tab(page, "Sessions")  # the Sessions tab is still there, as it was
    expect()(page.locator(".licusage-count")).to_have_text(re.compile(r"^\d+ sessions of"))
    assert browser_page.outside == []


def test_a_seat_gauge_click_filters_the_table(server, browser_page, store):
    expected = sorted(queries.session_usage(store, license_types={RO: ["Concurrent User"]})["user"])
    page = browser_page()
    page.goto(server.url)
    wait_for_dashboard(page)
    expect()(page.locator(".licusage-count")).to_have_text(re.compile(r"^\d+ sessions of"))
    page.get_by_role("button", name=f"{RO} · Concurrent User").click()
    line = f"{len(expected)} sessions of {len(expected)} distinct users"
    expect()(page.locator(".licusage-count")).to_have_text(line)
    users = page.locator(".tabulator-row [tabulator-field=User]")
    expect()(users).to_have_count(len(expected))
    assert sorted(users.all_inner_texts()) == expected
    # the click goes into the URL, as a Run does (a change of its own, maybe after the rows)
    expect()(page).to_have_url(re.compile(r"Reports\+Only=Concurrent\+User"))
