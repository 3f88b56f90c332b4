"""Real license servers' dozens of features in Chromium: the per-product license-type filters
and the seat gauges fold behind a summary, so the table is in the first screen at a phone's
width and a laptop's; opened, a gauge still filters the table. The debug log's features have
unknown seats, and the Utilisation tab draws them so."""

from __future__ import annotations

import re

import pytest

from licusage import db, queries
from licusage.sources.flexlm_log import import_flexlm_log
from licusage.sources.lmstat import import_lmstat, read_text
from tests.browser.conftest import expect, wait_for_dashboard
from tests.helpers import realdata

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_many_products")]

# lmstat-a-app1.txt: 54 "Users of" lines, feature42 twice (grep -c '^Users of'; sort -u);
# flexlm-debug-autodesk-2016.log: 5 features checked out (awk on its OUT: lines), seats unknown
FEATURES = 53 + 5


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('many') / 'store.sqlite'}"
    engine = db.connect(url)
    try:
        path = realdata("lmstat-a-app1.txt")
        import_lmstat(engine, read_text(str(path)), server="app1", source=str(path))
        import_flexlm_log(engine, [str(realdata("flexlm-debug-autodesk-2016.log"))], server="adsk")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(server_factory, store_url):
    return server_factory(store_url)


@pytest.mark.parametrize("width", [390, 1280])
def test_the_filters_and_gauges_fold_and_the_table_is_in_sight(server, browser_page, width):
    page = browser_page(width=width, height=900)
    page.goto(server.url)
    wait_for_dashboard(page)
    types = page.get_by_text(f"License types of {FEATURES} products")
    seats = page.get_by_text(
        re.compile(
            rf"^Seats of {FEATURES} pools: \d+ nearly full, 5 seats unknown(, \d+ without seats)?$"
        )
    )
    expect()(types).to_be_visible()
    expect()(seats).to_be_visible()
    expect()(page.locator("label", has_text=re.compile("^feature31$"))).to_be_hidden()  # folded
    expect()(page.get_by_role("button", name="feature31 · Floating")).to_be_hidden()
    header = page.locator(".tabulator-col-title", has_text="User")
    expect()(header).to_be_visible()
    box = header.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] < 900
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_an_opened_gauge_filters_the_table_and_the_fold_says_so(server, browser_page, store_url):
    engine = db.connect(store_url)
    try:
        expected = queries.session_usage(engine, license_types={"feature31": ["Floating"]})
    finally:
        engine.dispose()
    users = expected["user"].nunique()
    page = browser_page(width=1280, height=900)
    page.goto(server.url)
    wait_for_dashboard(page)
    page.get_by_text(re.compile(rf"^Seats of {FEATURES} pools")).click()
    page.get_by_role("button", name="feature31 · Floating").click()
    line = f"{len(expected)} sessions of {users} distinct users"
    expect()(page.locator(".licusage-count")).to_have_text(line)
    expect()(page.get_by_text("chosen for feature31")).to_be_visible()
    page.get_by_text(f"License types of {FEATURES} products").click()
    chosen = page.locator(".bk-input-group", has_text="feature31")
    expect()(chosen.locator(".choices__item--selectable", has_text="Floating")).to_be_visible()


def test_the_utilisation_tab_draws_pools_of_unknown_seats(server, browser_page):
    page = browser_page(width=1280, height=900)
    page.goto(server.url)
    wait_for_dashboard(page)
    page.locator(".bk-tab", has_text="Utilisation").click()
    summary = page.get_by_text(re.compile(rf"of {FEATURES} pools reached their seat count"))
    expect()(summary).to_contain_text("(5 of unknown seats)", timeout=120_000)
    row = page.locator(".tabulator-row", has_text="64300ACD_F / Floating")
    expect()(row.locator("[tabulator-field=Seats]")).to_have_text("-")
    plotted = page.locator(".bk-input-group", has_text="Pools plotted")
    expect()(plotted.locator(".choices__list--multiple .choices__item")).to_have_count(
        12
    )  # the busiest
    assert page.locator(".notyf__toast--error").count() == 0
