"""The Utilisation tab (licusage.app.utilisation), driven in-process without a browser."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holoviews as hv
import pandas as pd
import panel as pn
import pytest

from licusage import catalog, db, sessions
from licusage.app.format import day_bounds
from licusage.app.utilisation import (
    PEAK_HEADERS,
    RESOLUTIONS,
    UtilisationView,
)

CM, RO = "Case Management", "Reports Only"
CU = catalog.CONCURRENT_USER
DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@pytest.fixture
def store(engine, frozen):
    """Case Management (2 seats): alice 09:00-11:00 and bob 10:00-10:30 on Monday 2 March;
    Reports Only (5 seats): carol 14:00-15:00 on Tuesday."""
    frozen.set(DAY - timedelta(days=30))
    catalog.add_pool(engine, CM, CU, 2)
    catalog.add_pool(engine, RO, CU, 5)
    for user, product, start, hours in [
        ("alice", CM, DAY + timedelta(hours=9), 2),
        ("bob", CM, DAY + timedelta(hours=10), 0.5),
        ("carol", RO, DAY + timedelta(days=1, hours=14), 1),
    ]:
        result = sessions.login(engine, user, {product: CU}, at=start)
        sessions.end(engine, result.session_id, at=start + timedelta(hours=hours))
    frozen.set(DAY + timedelta(days=5))
    return engine


def _view(engine, zone=UTC, **params) -> UtilisationView:
    params.setdefault("first_day", date(2026, 3, 2))
    params.setdefault("last_day", date(2026, 3, 3))
    view = UtilisationView(engine, zone=zone, **params)
    assert view.refresh(), view.last_error
    return view


def test_window_is_whole_days_in_the_viewers_zone():
    paris = pytest.importorskip("zoneinfo").ZoneInfo("Europe/Paris")
    start, end = day_bounds(date(2026, 3, 3), date(2026, 3, 2), paris)
    assert start == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 3, 23, 0, tzinfo=UTC)


def test_concurrency_plot_per_pool_against_seats(store):
    view = _view(store)
    assert view.concurrency.shape == (48, 2)  # two days, hourly
    cm = view.concurrency[(CM, CU)]
    assert cm[pd.Timestamp("2026-03-02 10:00", tz="UTC")] == 2
    assert cm[pd.Timestamp("2026-03-02 09:00", tz="UTC")] == 1
    overlays = [pane.object for pane in view.plots]
    assert all(isinstance(overlay, hv.Overlay) for overlay in overlays)
    assert [o.opts.get().kwargs["title"] for o in overlays] == [
        f"{CM} / {CU}",
        f"{RO} / {CU}",
    ]
    curve, seats = overlays[0].Curve.In_use, overlays[0].HLine.Seats
    assert curve.dimension_values("in use").max() == 2
    assert seats.data == 2
    assert overlays[1].HLine.Seats.data == 5
    # from 0 to above the higher of the peak and the seats: the seats line is always in sight
    assert [o.opts.get().kwargs["ylim"] for o in overlays] == [(0, 2.2), (0, 5.5)]
    figure = hv.renderer("bokeh").get_plot(overlays[0]).state
    assert figure.yaxis[0].ticker.min_interval == 1  # whole seats only


def test_peaks_table(store):
    view = _view(store)
    table = view.table.value
    assert list(table.columns) == list(PEAK_HEADERS.values())
    cm = table.set_index("Pool").loc[f"{CM} / {CU}"]
    assert cm["Seats"] == 2
    assert cm["Peak in use"] == 2
    assert cm["Peak at"] == "2026-03-02 10:00"
    # 30 minutes of 48 hours at 2 seats
    assert cm["Time at ≥90% of seats"] == pytest.approx(round(0.5 / 48, 3))  # shown in %
    assert "**1** of 2 pools reached their seat count" in view.summary.object
    # a share, sorted as a number, shown in per cent and as "-" where the seats are unknown
    share = view.table.formatters["Time at ≥90% of seats"]
    assert (share.format, share.nan_format) == ("0.0 %", "-")
    assert table["Time at ≥90% of seats"].dtype == "float64"


def test_heat_map_follows_the_chosen_pool(store):
    view = _view(store)
    assert view.pool_select.options == [f"{CM} / {CU}", f"{RO} / {CU}"]
    assert view.pool == f"{CM} / {CU}"
    data = view.heat.object.data
    monday_ten = data[(data["day"] == "Mon") & (data["hour"] == 10)]
    assert monday_ten["mean"].tolist() == [1.5]
    assert monday_ten["peak"].tolist() == [2]
    view.pool_select.value = f"{RO} / {CU}"
    assert view.pool == f"{RO} / {CU}"
    data = view.heat.object.data
    assert data.set_index(["day", "hour"]).loc[("Tue", 14), "mean"] == 1.0
    assert RO in view.heat.object.opts.get().kwargs["title"]


def test_heat_map_hours_are_the_viewers(store):
    view = _view(store, zone=ZoneInfo("Europe/Paris"))  # UTC+1 in March
    data = view.heat.object.data
    paris_eleven = data[(data["day"] == "Mon") & (data["hour"] == 11)]
    assert paris_eleven["mean"].tolist() == [1.5]  # 10:00 UTC's hour
    options = view.heat.object.opts.get().kwargs
    assert options["title"] == f"{CM} / {CU}: mean in use"
    assert options["xlabel"] == "hour of day (Europe/Paris)"
    assert options["clim"] == (0.0, 1.5)  # the highest mean: Monday 10:00-11:00 UTC


def test_changing_the_window_or_resolution_reloads(store):
    view = _view(store)
    view.resolution.value = RESOLUTIONS["Daily"]
    assert view.freq == "1D"
    assert list(view.concurrency[(CM, CU)]) == [2, 0]
    view.dates.value = (date(2026, 3, 3), date(2026, 3, 3))
    assert view.first_day == date(2026, 3, 3)
    assert list(view.concurrency[(CM, CU)]) == [0]
    assert list(view.concurrency[(RO, CU)]) == [1]


def test_an_unreachable_store_is_reported_not_raised(frozen, tmp_path):
    engine = db.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    view = UtilisationView(engine, zone=UTC)
    assert view.refresh() is False
    assert "database is unavailable" in view.last_error
    engine.dispose()


def test_the_view_reads_once_drawn(store):
    view = UtilisationView(store, zone=UTC, first_day=date(2026, 3, 2), last_day=date(2026, 3, 3))
    assert view.concurrency is None  # nothing read while the page is built
    model = pn.panel(view).get_root()  # outside a server, "page loaded" is now
    assert model is not None
    assert view.concurrency is not None
    assert len(view.plots) == 2


def test_the_dashboard_has_a_utilisation_tab(store):
    from licusage.app.main import LazyTab, create_app

    page = create_app(store)
    tabs = page.tabs
    titles = [tab.title for tab in tabs.get_root().tabs]  # as the browser gets them
    assert "Utilisation" in titles
    lazy = page.lazy_tabs["Utilisation"]
    assert isinstance(lazy, LazyTab)
    assert lazy.view is None
    tabs.active = titles.index("Utilisation")
    shown = lazy.view.layout  # what the tab draws (the view reads when it is first drawn)
    headings = [o.object for o in shown.objects if isinstance(o, pn.pane.Markdown)]
    assert "### Seats in use against seats owned" in headings


def test_the_charts_stop_at_now(store, frozen):
    frozen.set(DAY + timedelta(hours=10, minutes=20))  # Monday 10:20, during both sessions
    view = _view(store)
    assert view.concurrency.index.max() == pd.Timestamp("2026-03-02 10:00", tz="UTC")
    assert view.concurrency[(CM, CU)].iloc[-1] == 2  # the hour under way, so far
    curve = view.plots[0].object.Curve.In_use
    assert curve.dimension_values(0).max() <= pd.Timestamp("2026-03-02 10:20").to_datetime64()


def test_a_pool_of_unknown_seats_is_drawn_without_a_seat_line(store, frozen):
    # a FlexLM debug log's features: seats unknown until an lmstat says them
    frozen.set(DAY)
    catalog.add_pool(store, "solver", "Floating", None)
    result = sessions.login(store, "dora", {"solver": "Floating"}, at=DAY + timedelta(hours=8))
    sessions.end(store, result.session_id, at=DAY + timedelta(hours=12))
    frozen.set(DAY + timedelta(days=5))
    view = _view(store)
    assert view.last_error == ""
    overlays = {o.opts.get().kwargs["title"]: o for o in (pane.object for pane in view.plots)}
    solver = overlays["solver / Floating (seats unknown)"]
    assert "HLine" not in solver.children
    assert solver.Curve.In_use.dimension_values(1).max() == 1
    assert overlays[f"{CM} / {CU}"].HLine.Seats.data == 2
    row = view.table.value.set_index("Pool").loc["solver / Floating"]
    assert pd.isna(row["Seats"])
    assert row["Peak in use"] == 1
    assert "**1** of 3 pools reached their seat count (1 of unknown seats)." in view.summary.object


def test_a_fault_in_drawing_is_a_notification_not_a_blank_tab(store, monkeypatch):
    notes = []
    view = UtilisationView(store, zone=UTC, first_day=date(2026, 3, 2), last_day=date(2026, 3, 3))
    view.notices_to = lambda level, message: notes.append((level, message))

    def broken(data):
        raise TypeError("a drawing bug")

    monkeypatch.setattr(view, "draw", broken)
    assert view.refresh() is False
    assert notes == [("error", "Utilisation: unexpected error (TypeError)")]


def test_past_twelve_pools_the_busiest_are_plotted_and_the_rest_a_choice_away(store, frozen):
    from licusage.app.views import MANY_POOLS

    frozen.set(DAY)
    tools = [f"tool {n:02d}" for n in range(MANY_POOLS)]
    for n, tool in enumerate(tools):
        catalog.add_pool(store, tool, CU, 10)
        for user in range(n):  # tool n: n of 10 seats in use, 08:00 to 09:00
            login = sessions.login(store, f"u{user}", {tool: CU}, at=DAY + timedelta(hours=8))
            sessions.end(store, login.session_id, at=DAY + timedelta(hours=9))
    catalog.add_pool(store, "expired", CU, 0)  # 0 of 0 seats: "full", but of no interest
    frozen.set(DAY + timedelta(days=5))
    view = _view(store)
    labels = [f"{CM} / {CU}", f"{RO} / {CU}", *(f"{tool} / {CU}" for tool in tools)]
    labels.append(f"expired / {CU}")
    assert view.plotted.visible
    assert view.plotted.options == labels
    # by share of seats at the peak: CM 2 of 2, tool 10 and 11 10 of 10 (the 11th login was
    # denied), tool 09 9 of 10 ... tool 02 2 of 10, RO 1 of 5; tool 01 (1 of 10), tool 00 and
    # expired (never used) are left out
    expected = [f"{CM} / {CU}", f"{RO} / {CU}", *(f"{tool} / {CU}" for tool in tools[2:])]
    assert len(expected) == MANY_POOLS
    assert view.plotted.value == expected
    titles = [pane.object.opts.get().kwargs["title"] for pane in view.plots]
    assert titles == expected
    assert len(view.table.value) == len(labels)  # the peaks table has every pool
    view.plotted.value = [*expected, f"{tools[1]} / {CU}"]
    titles = [pane.object.opts.get().kwargs["title"] for pane in view.plots]
    assert titles == [*expected[:2], f"{tools[1]} / {CU}", *expected[2:]]
    view.resolution.value = RESOLUTIONS["Daily"]  # a new read keeps the choice
    assert len(view.plots) == MANY_POOLS + 1


def test_a_few_pools_are_all_plotted_without_a_choice(store):
    view = _view(store)
    assert not view.plotted.visible
    assert len(view.plots) == 2
