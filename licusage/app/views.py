"""The Sessions tab's views: options, seat gauges, results table and the logout dialog.

Each view takes the :class:`~licusage.app.explorer.SessionExplorer` it shows and acts on; the
views hold widgets only, the explorer holds the state and talks to the store.
"""

from __future__ import annotations

import html
import io
from functools import partial
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import HTMLTemplateFormatter
from panel.viewable import Viewer

from .. import export
from ..actions import ADMIN
from . import format as fmt
from .explorer import IDLE_CHOICES, NEAR_FULL, LogoutPreview, SessionExplorer

PAGE_SIZE = 25


class OptionsView(Viewer):
    """The filters: ``User``, one multi-select per product, ``Idle over`` and ``Run``."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state the options edit.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        ex = self._ex
        self.user_input = pn.widgets.TextInput(
            label="User", placeholder="all users", value=ex.user, width=220
        )
        self.idle_select = pn.widgets.Select(
            label="Idle over", options=list(IDLE_CHOICES), value=ex.idle_over, width=120
        )
        self.run_button = pn.widgets.Button(label="Run", color="primary", width=100)
        self.product_inputs: dict[str, pn.widgets.MultiChoice] = {}
        self._syncing = False
        self.user_input.param.watch(self._user_changed, ["value", "value_input"])
        self.idle_select.param.watch(lambda e: setattr(ex, "idle_over", e.new), "value")
        self.run_button.on_click(self._run)
        # the loading indicator is on Run: toggling the table's own `loading` while its data
        # changes can leave Tabulator without rows
        ex.param.watch(lambda e: setattr(self.run_button, "loading", e.new), "busy")
        ex.param.watch(self._build_products, ["products", "product_types"])
        ex.param.watch(self._show_filters, ["license_types", "user", "idle_over"])
        self.code = pn.pane.HTML("", css_classes=["licusage-filter"], margin=(0, 10))
        ex.param.watch(self._show_code, ["user", "license_types", "idle_over", "products"])
        self._show_code()
        self._layout = pn.FlexBox(sizing_mode="stretch_width", align_items="flex-end")
        self._build_products()
        self._panel = pn.Column(self._layout, self.code, sizing_mode="stretch_width")

    def _show_code(self, *_: Any) -> None:
        """Echo the filter the server holds, as the notebook call that gives the same rows."""
        code = html.escape(self._ex.filter_code())
        self.code.object = f'<code title="The same rows in a notebook">{code}</code>'

    def _user_changed(self, event: param.parameterized.Event) -> None:
        if not self._syncing:
            self._ex.user = event.new or ""

    def _types_changed(self, product: str, values: list[str]) -> None:
        if self._syncing:
            return
        chosen = dict(self._ex.license_types)
        chosen[product] = list(values)
        self._ex.license_types = {p: t for p, t in chosen.items() if t}

    def _build_products(self, *_: Any) -> None:
        ex = self._ex
        self.product_inputs = {}
        for product in ex.products:
            widget = pn.widgets.MultiChoice(
                label=product,
                options=list(ex.product_types.get(product, [])),
                value=list(ex.license_types.get(product, [])),
                placeholder="all types",
                width=200,
            )
            widget.param.watch(lambda e, p=product: self._types_changed(p, e.new), "value")
            self.product_inputs[product] = widget
        self._layout.objects = [
            self.user_input,
            *self.product_inputs.values(),
            self.idle_select,
            self.run_button,
        ]

    def _show_filters(self, *_: Any) -> None:
        """Reflect filters changed elsewhere (e.g. a click on a seat gauge) in the widgets."""
        ex = self._ex
        self._syncing = True
        try:
            for product, widget in self.product_inputs.items():
                wanted = list(ex.license_types.get(product, []))
                if list(widget.value) != wanted:
                    widget.value = wanted
            if self.user_input.value_input != ex.user and self.user_input.value != ex.user:
                self.user_input.value = ex.user
            self.idle_select.value = ex.idle_over
        finally:
            self._syncing = False

    async def _run(self, _event: Any = None) -> None:
        await self._ex.run_async(first_rows=PAGE_SIZE)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel


class SeatsView(Viewer):
    """Seats in use against seats owned per pool, denials today; a click filters the table."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose pools it shows.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self._cards = pn.FlexBox(sizing_mode="stretch_width")
        self.buttons: dict[tuple[str, str], pn.widgets.Button] = {}
        self._ex.param.watch(self._build, "pools")
        self._build()

    @staticmethod
    def level(in_use: int, seats: int) -> str:
        """``danger`` for a pool nearly full (or over), ``warning`` from 75%, else ``success``."""
        share = in_use / seats if seats else 1.0
        if share >= NEAR_FULL:
            return "danger"
        return "warning" if share >= 0.75 else "success"

    def _filter(self, product: str, license_type: str, _event: Any = None) -> None:
        self._ex.filter_pool(product, license_type)

    def _build(self, *_: Any) -> None:
        pools = self._ex.pools
        cards, self.buttons = [], {}
        if pools is not None:
            for pool in pools.to_dict("records"):
                product, license_type = str(pool["product"]), str(pool["license_type"])
                in_use, known = int(pool["in_use"]), not pd.isna(pool["seats"])
                seats = int(pool["seats"]) if known else 0
                denied = int(pool["denials_today"])
                level = self.level(in_use, seats) if known else "secondary"
                button = pn.widgets.Button(
                    label=f"{product} · {license_type}",
                    color="light",
                    sizing_mode="stretch_width",
                    stylesheets=[":host .bk-btn { font-size: 12px; text-align: left; }"],
                    description="Show the sessions holding this license",
                )
                button.on_click(partial(self._filter, product, license_type))
                self.buttons[(product, license_type)] = button
                denials = f" · {denied} denied today" if denied else ""
                reserved = int(pool.get("reserved", 0))
                if reserved:
                    denials = f" ({reserved} reserved){denials}"
                of_seats = f"/ {seats} seats in use" if known else "in use · seats unknown"
                cards.append(
                    pn.Column(
                        button,
                        pn.indicators.Progress(
                            value=min(in_use, seats) if known else 0,
                            max=max(seats, 1),
                            bar_color=level,
                            sizing_mode="stretch_width",
                            height=12,
                        ),
                        pn.pane.HTML(
                            f"<b>{in_use}</b> {of_seats}{denials}",
                            css_classes=[f"seats-{level}"],
                            margin=(0, 10),
                        ),
                        width=260,
                        styles={"border": "1px solid #ddd", "border-radius": "6px"},
                        margin=4,
                    )
                )
        self._cards.objects = cards

    def __panel__(self) -> pn.viewable.Viewable:
        return self._cards


class LogoutDialog(Viewer):
    """The confirmation: how many sessions of which users, the licenses freed, Logout/Cancel."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose selection ends.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self.preview: LogoutPreview | None = None
        self.message = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.logout_button = pn.widgets.Button(label="Logout", color="danger", width=110)
        self.cancel_button = pn.widgets.Button(label="Cancel", width=110)
        self.logout_button.on_click(self._logout)
        self.cancel_button.on_click(lambda _e: self.close())
        self.modal = pn.Modal(
            pn.Column(
                pn.pane.Markdown("### Logout Session"),
                self.message,
                pn.Row(self.logout_button, self.cancel_button),
                width=480,
            ),
            show_close_button=True,
            background_close=True,
        )

    def open(self, preview: LogoutPreview) -> None:
        """Show the dialog for `preview`."""
        self.preview = preview
        lines = [preview.text()]
        if preview.spared:
            lines.append(f"Your own {len(preview.spared)} session(s) stay logged in.")
        if len(preview.licenses):
            lines.append("This frees:")
            lines += [
                f"- {row.product} · {row.license_type}: {row.count}"
                for row in preview.licenses.itertuples(index=False)
            ]
        else:
            lines.append("These sessions hold no licenses.")
        # names come from the store: escaped, so a user name cannot inject markup
        lines = [html.escape(line, quote=False) for line in lines]
        self.message.object = "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:])
        self.logout_button.disabled = not preview.session_ids
        self.modal.show()

    def close(self) -> None:
        self.preview = None
        self.modal.hide()

    def _logout(self, _event: Any = None) -> None:
        preview = self.preview
        self.modal.hide()
        if preview is not None and preview.session_ids:
            self._ex.logout(preview.session_ids)
        self.preview = None

    def __panel__(self) -> pn.viewable.Viewable:
        return self.modal


class ResultsView(Viewer):
    """The sessions table with selection, the count line, CSV download and Logout Session."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose result it shows.")
    dialog = param.ClassSelector(class_=LogoutDialog, doc="The confirmation the logout opens.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self._dialog: LogoutDialog = params["dialog"]
        ex = self._ex
        self.table = pn.widgets.Tabulator(
            self._empty(),
            pagination="remote",
            page_size=PAGE_SIZE,
            selectable="checkbox",
            show_index=False,
            disabled=True,
            formatters={"Idle": HTMLTemplateFormatter(template=fmt.IDLE_TEMPLATE)},
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            height=760,
            # one page is 25 rows: draw them all, rather than only those Tabulator's virtual
            # renderer sees in its viewport (which can be none while the page is laid out)
            configuration={"renderVertical": "basic"},
        )
        self.summary = pn.pane.Markdown("Press **Run** to list the active sessions.")
        self.selection_text = pn.pane.Markdown("", margin=(5, 10))
        self.select_all_button = pn.widgets.Button(label="Select all matching", disabled=True)
        self.clear_button = pn.widgets.Button(label="Clear selection", disabled=True)
        self.logout_button = pn.widgets.Button(
            label="Logout Session", color="danger", disabled=True
        )
        self.download = pn.widgets.FileDownload(
            callback=self._csv, filename="sessions.csv", label="Download CSV", disabled=True
        )
        self.table.param.watch(self._selection_changed, "selection")
        self.select_all_button.on_click(lambda _e: self._select_all())
        self.clear_button.on_click(lambda _e: ex.select([]))
        self.logout_button.on_click(self._logout_clicked)
        ex.param.watch(self._show_result, "result")
        ex.param.watch(self._show_selection, ["selected_ids", "all_matching"])
        self._layout = pn.Column(
            pn.Row(
                self.summary,
                pn.HSpacer(),
                self.selection_text,
                self.select_all_button,
                self.clear_button,
                self.download,
                self.logout_button,
                sizing_mode="stretch_width",
            ),
            self.table,
            sizing_mode="stretch_width",
        )

    def _empty(self) -> pd.DataFrame:
        columns = [*fmt.BASE_HEADERS.values(), *self._ex.products]
        return pd.DataFrame(columns=columns, index=pd.Index([], name="Session", dtype="int64"))

    def _show_result(self, *_: Any) -> None:
        ex = self._ex
        frame = ex.result if ex.result is not None else self._empty()
        self.table.value = frame
        self.summary.object = ex.summary
        self.download.disabled = ex.result is None
        total = ex.total if ex.result is not None else 0
        self.select_all_button.label = f"Select all {total:,} matching"
        self.select_all_button.disabled = not total
        if ex.selected_ids and len(frame):  # the rest of a Run arrived: keep the ticks
            rows = frame.index.get_indexer(pd.Index(ex.selected_ids))
            self._updating_selection = True
            try:
                self.table.selection = [int(r) for r in rows if r >= 0]
            finally:
                self._updating_selection = False
        self._show_selection()

    def _selection_changed(self, event: param.parameterized.Event) -> None:
        if self._updating_selection:
            return
        frame = self.table.value
        ids = [int(i) for i in frame.index[list(event.new)]] if len(frame) else []
        self._ex.select(ids)

    _updating_selection = False

    def _select_all(self) -> None:
        count = self._ex.select_all_matching()
        self._updating_selection = True
        try:
            self.table.selection = list(range(count))
        finally:
            self._updating_selection = False

    def _show_selection(self, *_: Any) -> None:
        ex = self._ex
        count = len(ex.selected_ids)
        if ex.all_matching:
            self.selection_text.object = f"**All {count:,} matching sessions selected**"
        else:
            self.selection_text.object = f"{count:,} selected" if count else ""
        if not count and self.table.selection:
            self._updating_selection = True
            try:
                self.table.selection = []
            finally:
                self._updating_selection = False
        self.clear_button.disabled = not count
        self.logout_button.disabled = not (count and ex.identity.may_logout)

    def _logout_clicked(self, _event: Any = None) -> None:
        ex = self._ex
        if not ex.selected_ids:
            return
        if ex.current_role() != ADMIN:
            # the button is disabled for viewers; a tampered browser still reaches the server,
            # which refuses (and audits) through authorized_logout
            ex.logout()
            return
        preview = ex.preview_logout()
        if preview is not None:
            self._dialog.open(preview)

    def _csv(self) -> io.StringIO:
        frame = self._ex.whole_result()  # all rows, even while the Run's rest is being read
        if frame is None:
            return io.StringIO()
        return export.frame_csv_file(fmt.export_frame(frame))  # no cell runs as a formula

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout
