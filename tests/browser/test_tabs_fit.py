"""Issue 12 in Chromium, at a laptop's and a narrow window's width: no cell or header of any
tab's table is cut short ("14h 0…", "Time at ≥90…", Audit's "Licenses freed"), and the
Utilisation tab's plots are drawn, at their size, without sideways scrolling."""

from __future__ import annotations

import re
import struct
from datetime import timedelta

import pytest

from licusage import actions, clock, db, sessions
from tests.browser.conftest import ADMIN, expect, seed_store, wait_for_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_tabs_fit")]

CM = "Case Management"

# every shown Tabulator cell and header whose text is wider than its box (an ellipsis)
CUT_SHORT = """els => els
  .filter(e => e.offsetParent !== null && e.innerText.trim() !== "")
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.innerText.trim())"""


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    """The browser tests' small store, with a session idle for 14 hours and two audit events."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fit') / 'store.sqlite'}"
    seed_store(url)
    engine = db.connect(url)
    try:
        start = clock.now() - timedelta(hours=14, minutes=5)
        idle = sessions.login(engine, "hana.nightshift", {CM: "Concurrent User"}, at=start)
        assert idle.ok
        ended = sessions.login(engine, "ivan.early", {CM: "Concurrent User"}, at=start)
        actions.logout_sessions(engine, [ended.session_id], actor=ADMIN)
    finally:
        engine.dispose()
    return server_factory(url)


def cut_short(page) -> list[str]:
    cells = page.locator(".tabulator-cell, .tabulator-col-title")
    return cells.evaluate_all(CUT_SHORT)


@pytest.mark.parametrize("width", [375, 800, 1280])
def test_no_table_cell_is_cut_short(server, browser_page, width):
    page = browser_page(width=width, height=900)
    page.goto(server.url)
    wait_for_dashboard(page)
    expect()(page.locator(".tabulator-row", has_text="hana.nightshift")).to_have_count(1)
    expect()(page.locator(".tabulator-cell", has_text="14h 05m")).to_have_count(1)
    assert cut_short(page) == []
    page.locator(".bk-tab", has_text="Utilisation").click()
    expect()(page.locator(".tabulator-col-title", has_text="Time at ≥90% of seats")).to_be_visible()
    expect()(page.locator(".tabulator-row").first).to_be_visible()
    share = page.locator(".tabulator-cell[tabulator-field='Time at ≥90% of seats']").first
    expect()(share).to_have_text(re.compile(r"^\d+\.\d %$"))  # with its unit
    assert cut_short(page) == []
    page.locator(".bk-tab", has_text="Audit").click()
    expect()(page.locator(".tabulator-col-title", has_text="Licenses freed")).to_be_visible()
    expect()(page.locator(".tabulator-row", has_text="ivan.early")).to_have_count(1)
    assert cut_short(page) == []
    page.locator(".bk-tab", has_text="Alerts").click()
    expect()(page.get_by_text("No alert has fired", exact=False)).to_be_visible()
    # its line wraps: the page is no wider than the window, the button not over the words
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    words = page.get_by_text("No alert has fired", exact=False).bounding_box()
    button = page.get_by_role("button", name="Refresh").bounding_box()
    assert button["y"] >= words["y"] + words["height"] or button["x"] >= words["x"] + words["width"]


# the share of each plot's first (bottom) canvas that is drawn on, not white: a plot drawn with
# its title, axes and line covers several per cent; one laid out at no size, well under 1 %
PAINTED = """canvas => {
  const context = canvas.getContext("2d");
  if (!context || !canvas.width || !canvas.height) return 0;
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0 && pixels[i - 1] < 200) drawn++;
  return drawn / (canvas.width * canvas.height)
}"""

# the axes of every Bokeh figure on the page that are not beside their plot's frame
MISPLACED_AXES = """() => [...Bokeh.index.all_views()]
  .filter(view => view.model.type === "Figure" && view.frame && view.axis_views)
  .flatMap(view => view.axis_views.map(axis => [view.model.title?.text, axis.model.type,
    axis.panel.side, axis.bbox, view.frame.bbox]))
  .filter(([, , side, axis, frame]) =>
    (side === "below" && axis.top < frame.bottom - 1) ||
    (side === "left" && axis.right > frame.left + 1))
  .map(([title, type, side]) => `${title}: ${type} (${side})`)"""


@pytest.mark.parametrize("width", [800, 1280])
def test_utilisation_plots_are_drawn_and_fit(server, browser_page, width, tmp_path):
    page = browser_page(width=width, height=900)
    page.goto(server.url)
    wait_for_dashboard(page)
    page.locator(".bk-tab", has_text="Utilisation").click()
    expect()(page.locator(".tabulator-col-title", has_text="Time at ≥90% of seats")).to_be_visible()
    figures = page.locator(".bk-Figure")
    expect()(figures).to_have_count(4)  # three pools and the heat map
    page.wait_for_function("() => Bokeh.documents.every((doc) => doc.is_idle)")
    shares = [figure.locator("canvas").first.evaluate(PAINTED) for figure in figures.all()]
    assert min(shares) > 0.015, shares
    # and laid out: each plot's x axis under its frame, its y axis left of it (a plot laid out
    # wrongly draws its line with the axes at the top-left corner, no title or labels)
    misplaced = page.evaluate(MISPLACED_AXES)
    assert misplaced == [], misplaced
    shot = tmp_path / "utilisation.png"
    page.screenshot(path=str(shot), full_page=True)
    assert struct.unpack(">I", shot.read_bytes()[16:20])[0] == width  # no sideways scrolling
