"""The common part of the tabs that show a range of days: dates, Refresh and a summary."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any, ClassVar

import panel as pn
import param
from sqlalchemy.engine import Engine

from .. import clock
from .format import day_bounds, local_zone, viewer_zone
from .lifecycle import StoreView


class DayRangeView(StoreView):
    """A view over whole days in the viewer's time zone (read and drawn as every
    :class:`~licusage.app.lifecycle.StoreView`: Refresh and a change of dates read again)."""

    first_day = param.Date(doc="First day shown (in the viewer's time zone).")
    last_day = param.Date(doc="Last day shown, inclusive.")

    default_days: ClassVar[int] = 7

    def __init__(self, engine: Engine, *, zone: tzinfo | None = None, **params: Any) -> None:
        today = clock.now().astimezone(viewer_zone(zone)).date()
        params.setdefault("last_day", today)
        params.setdefault("first_day", today - timedelta(days=self.default_days - 1))
        super().__init__(engine, **params)
        self.zone = zone
        browser = pn.state.browser_info
        if zone is None and browser is not None:
            self.zone = local_zone(browser.timezone)
        self.dates = pn.widgets.DateRangePicker(
            label="Dates", value=(self.first_day, self.last_day), width=240
        )
        self.refresh_button = pn.widgets.Button(label="Refresh", color="primary", width=100)
        self.summary = pn.pane.Markdown("", margin=(5, 10))
        self.dates.param.watch(self._dates_changed, "value")
        self.refresh_button.on_click(self._refresh_clicked)

    def window(self) -> tuple[datetime, datetime]:
        """The shown days as a UTC [start, end) window."""
        return day_bounds(self.first_day, self.last_day, self.zone)

    def _refresh_clicked(self, _event: param.parameterized.Event) -> None:
        self.reload()

    def _dates_changed(self, event: param.parameterized.Event) -> None:
        if event.new:
            first, last = event.new
            self.param.update(first_day=first, last_day=last)
