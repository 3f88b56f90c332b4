"""The Alerts tab: every firing of the alert rules, newest first, open ones marked.

Reads through :func:`licusage.alerts.firings` only; stored text is shown as plain text.
"""

from __future__ import annotations

import json
import logging
from datetime import tzinfo
from typing import Any

import pandas as pd
import panel as pn
from sqlalchemy.engine import Engine

from .. import alerts
from .format import viewer_zone
from .lifecycle import StoreView
from .text import plain_html

log = logging.getLogger(__name__)

COLUMNS = ["Fired", "State", "Rule", "Subject", "Message", "Delivered"]
TIME_FORMAT = "%Y-%m-%d %H:%M"
LIMIT = 500


def firings_frame(firings: pd.DataFrame, zone: tzinfo | None) -> pd.DataFrame:
    """The table's frame from :func:`licusage.alerts.firings`' (times in `zone`)."""
    target = viewer_zone(zone)

    def local(value: Any) -> str:
        return "" if pd.isna(value) else value.tz_convert(target).strftime(TIME_FORMAT)

    def delivered(text: Any) -> str:
        if not isinstance(text, str) or not text:
            return ""
        try:
            return ", ".join(f"{k}: {v}" for k, v in sorted(json.loads(text).items()))
        except (ValueError, AttributeError):
            return str(text)

    return pd.DataFrame(
        {
            "Fired": [local(v) for v in firings["fired_at"]],
            "State": [
                "open" if pd.isna(v) else f"cleared {local(v)}" for v in firings["cleared_at"]
            ],
            "Rule": firings["rule"].astype(object).to_numpy(),
            "Subject": firings["subject"].astype(object).to_numpy(),
            "Message": firings["message"].astype(object).to_numpy(),
            "Delivered": [delivered(v) for v in firings["delivery"]],
        },
        columns=COLUMNS,
    )


class AlertsView(StoreView):
    """The firings of the alert rules (``licusage serve --alerts``, ``licusage alerts check``)."""

    title = "Alerts"

    def __init__(self, engine: Engine, zone: tzinfo | None = None, **params: Any) -> None:
        super().__init__(engine, **params)
        self.zone = zone
        # plain text that wraps (a narrow screen): an error's words are shown, never markup
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width", margin=(5, 10))
        self.refresh_button = pn.widgets.Button(label="Refresh", width=100)
        self.refresh_button.on_click(lambda _e: self.reload())
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=COLUMNS),
            pagination="remote",
            page_size=25,
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
        )
        self.layout = pn.Column(
            pn.FlexBox(self.summary, self.refresh_button, flex_wrap="wrap", align_items="center"),
            self.table,
            sizing_mode="stretch_width",
        )

    def read(self) -> pd.DataFrame:
        """The newest :data:`LIMIT` firings (:func:`licusage.alerts.firings`)."""
        return alerts.firings(self.engine, limit=LIMIT)

    def draw(self, data: pd.DataFrame) -> None:
        """Draw the table and the count line."""
        firings = data
        self.table.value = firings_frame(firings, self.zone)
        open_count = int(firings["cleared_at"].isna().sum())
        self.summary.object = plain_html(
            [
                f"{open_count} open, {len(firings)} firings shown (newest first)"
                if len(firings)
                else "No alert has fired (rules: licusage serve --alerts FILE, or licusage alerts "
                "check)."
            ]
        )

    def draw_failure(self, error: BaseException) -> None:
        """The count line says the alerts could not be read."""
        log.warning("alerts view: %s", error)
        self.summary.object = plain_html([f"Cannot read the alerts: {error}"])
