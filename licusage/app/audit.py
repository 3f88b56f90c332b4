"""The Audit tab: who logged out whom, when, why, and which licenses that freed.

Filterable by a date range (days in the viewer's time zone) and by actor; the CSV download
holds every event of the filtered trail, not only the visible page. The view reads through
:func:`licusage.queries.audit_log` and :func:`licusage.queries.audit_actors` only.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import tzinfo
from typing import Any

import pandas as pd
import panel as pn
import param
from sqlalchemy.engine import Engine

from .. import export, queries
from .format import local_zone, viewer_zone
from .text import markdown_literal
from .window import DayRangeView

log = logging.getLogger(__name__)

ALL_ACTORS = "All actors"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
COLUMNS = ["When", "Actor", "Action", "User", "Session", "Reason", "Licenses freed", "Details"]
PAGE_SIZE = 25


def describe_detail(action: str, detail: str | None) -> tuple[str, str]:
    """(licenses freed, other details) of an event's JSON detail, as short text.

    ``{"licenses": {"Case Management": "Concurrent User"}}`` gives
    ``("Case Management: Concurrent User", "")``; a refused logout names the role and sessions.
    """
    if not detail:
        return "", ""
    try:
        data = json.loads(detail)
    except ValueError:
        return "", str(detail)
    if not isinstance(data, dict):
        return "", str(data)
    licenses = data.pop("licenses", None)
    freed = (
        ", ".join(f"{product}: {kind}" for product, kind in sorted(licenses.items()))
        if isinstance(licenses, dict)
        else ""
    )
    if action == "end_session" and isinstance(licenses, dict) and not licenses:
        freed = "none held"
    ids = data.pop("session_ids", None)
    parts = [f"{key}: {value}" for key, value in sorted(data.items())]
    if isinstance(ids, list):
        shown = ", ".join(map(str, ids[:10])) + (
            f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        )
        parts.append(f"sessions: {shown}")
    return freed, "; ".join(parts)


def trail_frame(events: pd.DataFrame, zone: tzinfo | None) -> pd.DataFrame:
    """The table's frame from :func:`licusage.queries.audit_log`'s, times in `zone` (else the
    server's), one row per event, newest first."""
    target = viewer_zone(zone)
    described = [
        describe_detail(str(action), detail)
        for action, detail in zip(events["action"], events["detail"], strict=True)
    ]
    when = events["at"].dt.tz_convert(target).dt.tz_localize(None).dt.strftime(TIME_FORMAT)
    return pd.DataFrame(
        {
            "When": when.astype(object).to_numpy(),
            "Actor": events["actor"].astype(object).to_numpy(),
            "Action": events["action"].astype(object).to_numpy(),
            "User": events["user"].fillna("").astype(object).to_numpy(),
            "Session": events["session_id"].astype("Int64").to_numpy(dtype=object, na_value=""),
            "Reason": events["reason"].fillna("").astype(object).to_numpy(),
            "Licenses freed": [freed for freed, _ in described],
            "Details": [details for _, details in described],
        },
        columns=COLUMNS,
    )


class AuditView(DayRangeView):
    """The audit trail of one store, filterable by date range and actor, exportable to CSV."""

    default_days = 30
    title = "Audit"

    actor = param.String(default="", doc="Only events of this actor (exact name); empty for all.")
    trail = param.DataFrame(doc="The filtered trail as the table shows it, newest first.")

    def __init__(self, engine: Engine, *, zone: tzinfo | None = None, **params: Any) -> None:
        super().__init__(engine, zone=zone, **params)
        self.actor_select = pn.widgets.Select(
            label="Actor", options={ALL_ACTORS: ""}, value=self.actor, width=220
        )
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=COLUMNS),
            pagination="remote",
            page_size=PAGE_SIZE,
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            height=760,
        )
        self.download = pn.widgets.FileDownload(
            callback=self.csv, filename="audit.csv", label="Download CSV", disabled=True
        )
        self.actor_select.param.watch(lambda e: setattr(self, "actor", e.new or ""), "value")
        self.param.watch(lambda *_e: self.reload(), ["first_day", "last_day", "actor"])
        self.layout = pn.Column(
            pn.FlexBox(
                self.dates,
                self.actor_select,
                self.refresh_button,
                align_items="flex-end",
                sizing_mode="stretch_width",
            ),
            pn.Row(self.summary, pn.HSpacer(), self.download, sizing_mode="stretch_width"),
            self.table,
            sizing_mode="stretch_width",
        )
        browser = pn.state.browser_info
        if zone is None and browser is not None:
            browser.param.watch(self._zone_changed, "timezone")

    def _zone_changed(self, event: param.parameterized.Event) -> None:
        self.zone = local_zone(event.new)
        if self.has_read:
            self.reload()

    def read(self) -> tuple[pd.DataFrame, list[str]]:
        """The trail of the current filters and every actor (:mod:`licusage.queries`)."""
        start, end = self.window()
        events = queries.audit_log(self.engine, start=start, end=end, actor=self.actor or None)
        return events, queries.audit_actors(self.engine)

    def draw(self, data: tuple[pd.DataFrame, list[str]]) -> None:
        """Draw the table, the actor choices, the summary line and the download."""
        events, actors = data
        self.trail = trail_frame(events, self.zone)
        options = {ALL_ACTORS: "", **{name: name for name in actors}}
        if self.actor and self.actor not in options.values():
            options[self.actor] = self.actor
        self.actor_select.options = options
        self.table.value = self.trail
        self.download.disabled = False
        self.download.filename = f"audit_{self.first_day:%Y%m%d}-{self.last_day:%Y%m%d}.csv"
        count = len(self.trail)
        who = f" by {markdown_literal(self.actor)}" if self.actor else ""
        self.summary.object = (
            f"**{count:,}** audit event{'' if count == 1 else 's'}{who}, "
            f"{self.first_day:%Y-%m-%d} to {self.last_day:%Y-%m-%d}"
        )

    def csv(self) -> io.StringIO:
        """The whole filtered trail (every page) as CSV."""
        if self.trail is None:
            return io.StringIO()
        return export.frame_csv_file(self.trail)  # no cell runs as a formula
