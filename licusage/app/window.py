"""The common part of the tabs that show a range of days: dates, Refresh, a summary, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any, ClassVar

import panel as pn
import param
from panel.viewable import Viewer
from sqlalchemy.engine import Engine

from .. import clock
from ..errors import LicusageError, StoreUnavailable
from .format import day_bounds, local_zone, viewer_zone
from .text import notify


class DayRangeView(Viewer):
    """A view over whole days in the viewer's time zone, re-read by :meth:`refresh`."""

    first_day = param.Date(doc="First day shown (in the viewer's time zone).")
    last_day = param.Date(doc="Last day shown, inclusive.")
    last_error = param.String(default="", doc="The last failure shown to the user.")

    default_days: ClassVar[int] = 7
    title: ClassVar[str] = ""  # names the tab in its notifications

    def __init__(self, engine: Engine, *, zone: tzinfo | None = None, **params: Any) -> None:
        today = clock.now().astimezone(viewer_zone(zone)).date()
        params.setdefault("last_day", today)
        params.setdefault("first_day", today - timedelta(days=self.default_days - 1))
        super().__init__(**params)
        self.engine = engine
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

    def refresh(self) -> bool:
        """Read the window's data and redraw; False (and a notification) on failure."""
        raise NotImplementedError

    def window(self) -> tuple[datetime, datetime]:
        """The shown days as a UTC [start, end) window."""
        return day_bounds(self.first_day, self.last_day, self.zone)

    def failed(self, error: LicusageError) -> bool:
        """Tell the user what went wrong (never a traceback); returns False for `refresh`."""
        if isinstance(error, StoreUnavailable):
            self.notify("error", f"{self.title}: the database is unavailable ({error})")
        else:
            self.notify("error", f"{self.title}: {error}")
        return False

    def notify(self, level: str, message: str) -> None:
        if level == "error":
            self.last_error = message
        notify(pn.state.notifications, level, message)  # as plain text

    def _refresh_clicked(self, _event: param.parameterized.Event) -> None:
        self.refresh()

    def _dates_changed(self, event: param.parameterized.Event) -> None:
        if event.new:
            first, last = event.new
            self.param.update(first_day=first, last_day=last)
