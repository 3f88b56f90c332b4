"""The Utilisation tab: seats in use against seats owned per pool, peaks, and the weekly rhythm.

For a chosen range of days (in the viewer's time zone) and resolution it shows the concurrency
of every pool against its seats (:func:`licusage.analytics.concurrency`: the exact maximum of
distinct users per bucket), the peaks table (:func:`licusage.analytics.peaks`) and an
hour-of-week heat map of one pool (:func:`licusage.analytics.hour_of_week`, in the viewer's zone). The
view calls :mod:`licusage.analytics` only: no SQL here.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # registers the backend the plot options are for
import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter
from sqlalchemy.engine import Engine

from .. import analytics, clock
from .format import viewer_zone, zone_name
from .views import MANY_POOLS
from .window import DayRangeView

RESOLUTIONS = {"15 minutes": "15min", "Hourly": "1h", "Daily": "1D"}
PEAK_HEADERS = {
    "pool": "Pool",
    "seats": "Seats",
    "peak": "Peak in use",
    "peak_at": "Peak at",
    "p95": "95th percentile",
    "p99": "99th percentile",
    "share_near_full": "Time at ≥90% of seats",
}
TIME_FORMAT = "%Y-%m-%d %H:%M"


def busiest(peaks: pd.DataFrame, count: int) -> list[tuple[str, str]]:
    """The `count` pools of `peaks` used that came nearest their seats (time near full, then
    peak share of seats; pools of unknown seats by their peak, after those), in `peaks`' order.
    Pools never used come last."""
    seats = peaks["seats"].astype("Float64")
    ranked = pd.DataFrame(
        {
            "used": peaks["peak"] > 0,
            "near": peaks["share_near_full"].astype("Float64").fillna(-1.0),
            "share": (peaks["peak"] / seats.where(seats > 0)).fillna(-1.0),
            "peak": peaks["peak"],
        }
    ).sort_values(["used", "near", "share", "peak"], ascending=False, kind="stable")
    chosen = set(ranked.index[:count])
    return [
        (str(product), str(license_type))
        for index, product, license_type in zip(
            peaks.index, peaks["product"], peaks["license_type"], strict=True
        )
        if index in chosen
    ]


def peaks_table(peaks: pd.DataFrame, zone: tzinfo | None) -> pd.DataFrame:
    """The peaks table as shown: one row per pool, times in `zone`, shares in percent."""
    target = viewer_zone(zone)
    peak_at = peaks["peak_at"].dt.tz_convert(target).dt.strftime(TIME_FORMAT)
    frame = pd.DataFrame(
        {
            "pool": [
                analytics.pool_label(p, t)
                for p, t in zip(peaks["product"], peaks["license_type"], strict=True)
            ],
            "seats": peaks["seats"].astype("Int64").array,  # unknown seats: shown as "-"
            "peak": peaks["peak"].to_numpy(),
            "peak_at": peak_at.fillna("").astype(object).to_numpy(),
            "p95": peaks["p95"].to_numpy(),
            "p99": peaks["p99"].to_numpy(),
            "share_near_full": peaks["share_near_full"].round(3).to_numpy(),  # shown in %
        }
    )
    return frame.rename(columns=PEAK_HEADERS)


def _whole_seats(plot: Any, _element: Any) -> None:
    """No tick between two whole seat counts (a HoloViews plot hook)."""
    plot.state.yaxis.ticker.min_interval = 1


def concurrency_plots(
    concurrency: pd.DataFrame, seats: dict[tuple[str, str], int | None], zone: tzinfo | None
) -> list[hv.Overlay]:
    """One small plot per pool: the peak in use per bucket (a step line) under its seats (red;
    none when `seats` has them unknown, which the title says)."""
    target = viewer_zone(zone)
    local = pd.DatetimeIndex(concurrency.index).tz_convert(target).tz_localize(None)
    plots = []
    for column in concurrency.columns:
        pool = (str(column[0]), str(column[1]))
        label = analytics.pool_label(*pool)
        frame = pd.DataFrame({"time": local, "in use": concurrency[pool].to_numpy()})
        curve = hv.Curve(frame, "time", "in use", label="in use").opts(
            interpolation="steps-post", color="#1f77b4", tools=["hover"]
        )
        owned = seats.get(pool)
        top = max(int(frame["in use"].max()) if len(frame) else 0, owned or 0, 1)
        if owned is None:
            plot, title = hv.Overlay([curve]), f"{label} (seats unknown)"
        else:
            line = hv.HLine(owned, label="seats").opts(color="red", line_dash="dashed")
            plot, title = curve * line, label
        plots.append(
            plot.opts(
                title=title,
                width=460,
                height=200,
                xlabel="",
                ylabel="seats",
                show_legend=False,
                xticks=4,  # dates that stay apart on a phone's narrower plot too
                ylim=(0, top * 1.1),  # from 0, the seats line always in sight
                hooks=[_whole_seats],
            )
        )
    return plots


def heat_map(week: pd.DataFrame, pool: tuple[str, str] | None, zone: tzinfo | None) -> hv.HeatMap:
    """Mean in use of `pool` by weekday (rows, Monday on top) and hour of day, as `week` has them
    (:func:`licusage.analytics.hour_of_week` in `zone`, the viewer's)."""
    if pool is None:
        rows = week.iloc[0:0]
    else:
        rows = week[(week["product"] == pool[0]) & (week["license_type"] == pool[1])]
    data = pd.DataFrame(
        {
            "hour": rows["hour"].to_numpy(),
            "day": rows["day"].to_numpy(),
            "mean": rows["mean"].round(2).to_numpy(),
            "peak": rows["peak"].to_numpy(),
        }
    )
    named = zone_name(viewer_zone(zone))
    title = "Mean seats in use" if pool is None else f"{analytics.pool_label(*pool)}: mean in use"
    top = float(data["mean"].max()) if len(data) else 0.0
    return hv.HeatMap(data, ["hour", "day"], ["mean", "peak"]).opts(
        cmap="Blues",
        clim=(0.0, max(top, 1.0)),  # from none in use: an idle pool is pale, not mid-blue
        colorbar=True,
        responsive=True,  # the window's width up to 920 px: a narrow window scrolls no sideways
        height=280,
        tools=["hover"],
        title=title,
        xlabel=f"hour of day ({named})",
        ylabel="",
        invert_yaxis=True,
    )


class UtilisationView(DayRangeView):
    """Seat utilisation of one store over a range of days: concurrency, peaks, heat map."""

    default_days = 7
    title = "Utilisation"

    freq = param.Selector(  # type: ignore[var-annotated]
        default="1h", objects=list(RESOLUTIONS.values()), doc="Bucket length of the plots."
    )
    pool = param.String(
        default="", doc="The pool of the heat map, as 'Product / License type'; empty: the first."
    )
    concurrency = param.DataFrame(doc="analytics.concurrency of the window, as plotted.")
    peaks = param.DataFrame(doc="analytics.peaks of the window.")
    week = param.DataFrame(doc="analytics.hour_of_week of the window.")

    def __init__(self, engine: Engine, *, zone: tzinfo | None = None, **params: Any) -> None:
        super().__init__(engine, zone=zone, **params)
        self._seats: dict[tuple[str, str], int | None] = {}
        self._pools: dict[str, tuple[str, str]] = {}
        self.resolution = pn.widgets.Select(
            label="Resolution", options=RESOLUTIONS, value=self.freq, width=140
        )
        self.pool_select = pn.widgets.Select(label="Heat map pool", options=[], width=320)
        # past MANY_POOLS pools only the busiest are plotted (each plot costs the browser a
        # second or more to lay out); the others are a choice away
        self.plotted = pn.widgets.MultiChoice(
            label="Pools plotted", options=[], visible=False, sizing_mode="stretch_width"
        )
        # one pane per pool (a Bokeh grid of plots collapses inside the stretching layout)
        self.plots = pn.FlexBox()
        self._plot_panes: dict[str, pn.pane.HoloViews] = {}
        self.table = pn.widgets.Tabulator(
            _EMPTY_PEAKS,  # typed: the columns are laid out (numbers right) before the first read
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            # a share (it sorts as a number) shown in per cent, "19.8 %"; unknown seats: "-"
            formatters={
                PEAK_HEADERS["share_near_full"]: NumberFormatter(format="0.0 %", text_align="right")
            },
        )
        # empty until the first read: an empty heat map drawn first leaves the pool plots drawn
        # into the same tab blank (laid out at no size)
        self.heat = pn.pane.HoloViews(None, sizing_mode="stretch_width", max_width=920)
        self.resolution.param.watch(lambda e: setattr(self, "freq", e.new), "value")
        self.pool_select.param.watch(lambda e: setattr(self, "pool", e.new or ""), "value")
        self.plotted.param.watch(self._plotted_changed, "value")
        self._drawing = False  # draw() plots once, after choosing the pools plotted
        self.param.watch(lambda *_e: self.reload(), ["first_day", "last_day", "freq"])
        self.param.watch(lambda *_e: self._draw_heat_map(), ["pool"])
        self.layout = pn.Column(
            pn.FlexBox(
                self.dates,
                self.resolution,
                self.refresh_button,
                align_items="flex-end",
                sizing_mode="stretch_width",
            ),
            self.summary,
            pn.pane.Markdown("### Seats in use against seats owned"),
            self.plotted,
            self.plots,
            pn.pane.Markdown("### Peaks"),
            self.table,
            pn.pane.Markdown("### Hour of week"),
            self.pool_select,
            # in a box of its own: directly in this Column, a HoloViews pane leaves the pool
            # plots above it laid out wrongly in a served tab (axes at the top, no title)
            pn.FlexBox(self.heat, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The window's concurrency, peaks and hour-of-week figures (:mod:`licusage.analytics`)."""
        start, end = self.window()
        end = min(end, max(start, clock.now()))  # the rest of today is not drawn as 0 in use
        concurrency = analytics.concurrency(self.engine, start, end, freq=self.freq)
        peaks = analytics.peaks(self.engine, start, end)
        week = analytics.hour_of_week(self.engine, start, end, timezone=viewer_zone(self.zone))
        return concurrency, peaks, week

    def draw(self, data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
        """Draw the plots, the peaks table, the heat map and the summary line."""
        concurrency, peaks, week = data
        self._seats = {
            (p, t): None if pd.isna(s) else int(s)
            for p, t, s in zip(peaks["product"], peaks["license_type"], peaks["seats"], strict=True)
        }
        self._pools = {
            analytics.pool_label(str(c[0]), str(c[1])): (str(c[0]), str(c[1]))
            for c in concurrency.columns
        }
        self.param.update(concurrency=concurrency, peaks=peaks, week=week)
        labels = list(self._pools)
        many = len(labels) > MANY_POOLS
        if self.plotted.options != labels:  # other pools: plot the busiest of them
            labels_of = {pool: label for label, pool in self._pools.items()}
            chosen = [labels_of[p] for p in busiest(peaks, MANY_POOLS) if p in labels_of]
            self._drawing = True
            try:
                self.plotted.param.update(options=labels, value=chosen if many else labels)
            finally:
                self._drawing = False
        self.plotted.visible = many
        self._draw_plots()
        self.table.value = peaks_table(peaks, self.zone)
        self.pool_select.options = labels
        if self.pool not in self._pools:
            self.pool = labels[0] if labels else ""
        self._draw_heat_map()
        first, last = sorted((self.first_day, self.last_day))
        seats = peaks["seats"].astype("Int64")
        full = int((peaks["peak"] >= seats).sum()) if len(peaks) else 0
        unknown = int(seats.isna().sum())
        self.summary.object = (
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}: **{full}** of {len(peaks)} pools reached "
            "their seat count" + (f" ({unknown} of unknown seats)." if unknown else ".")
        )

    def _plotted_changed(self, _event: param.parameterized.Event) -> None:
        if not self._drawing:
            self._draw_plots()

    def _draw_plots(self) -> None:
        """One plot per pool plotted, in the pools' order."""
        if self.concurrency is None:
            return
        shown = [label for label in self._pools if label in self.plotted.value]
        columns = [self._pools[label] for label in shown]
        plots = concurrency_plots(self.concurrency[columns], self._seats, self.zone)
        panes = []
        for label, plot in zip(shown, plots, strict=True):
            if label in self._plot_panes:  # update in place: replacing drawn panes can blank them
                self._plot_panes[label].object = plot
            else:
                self._plot_panes[label] = pn.pane.HoloViews(plot, linked_axes=False)
            panes.append(self._plot_panes[label])
        if list(self.plots) != panes:
            self.plots[:] = panes

    def _draw_heat_map(self) -> None:
        if self.pool_select.value != self.pool and self.pool in self._pools:
            self.pool_select.value = self.pool
        week = self.week if self.week is not None else pd.DataFrame(columns=_WEEK_COLUMNS)
        self.heat.object = heat_map(week, self._pools.get(self.pool), self.zone)


_WEEK_COLUMNS = ["product", "license_type", "weekday", "day", "hour", "mean", "peak"]
_EMPTY_PEAKS = pd.DataFrame(
    {
        PEAK_HEADERS[name]: pd.Series(dtype=dtype)
        for name, dtype in [
            ("pool", "object"),
            ("seats", "int64"),
            ("peak", "int64"),
            ("peak_at", "object"),
            ("p95", "float64"),
            ("p99", "float64"),
            ("share_near_full", "float64"),
        ]
    }
)
