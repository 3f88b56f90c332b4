"""The Sessions tab's views: options, seat gauges, results table and the logout dialog.

Each view takes the :class:`~licusage.app.explorer.SessionExplorer` it shows and acts on; the
views hold widgets only, the explorer holds the state and talks to the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import HTMLTemplateFormatter
from panel.viewable import Viewer

from ..actions import LogoutPreview
from ..analytics import BUSY, NEAR_FULL
from ..display import plural
from . import format as fmt
from .explorer import FEW_SESSIONS, IDLE_CHOICES, PAGE_SIZE, SessionExplorer
from .lifecycle import soon
from .text import escaped, plain_html

REFRESH_CHOICES = {"off": 0, "10 s": 10, "1 min": 60}  # auto-refresh label -> seconds
EMPTY = "No active sessions match"
# a text input that reads as editable: white, with a visible border, placeholder in grey
INPUT_CSS = [":host input { background-color: white; border-color: #adb5bd; }"]
# a license server has dozens of features: past these, the per-product license-type filters
# and the seat gauges fold away behind a summary (the table stays in sight, on a phone too)
MANY_PRODUCTS = 6
MANY_POOLS = 12


class OptionsView(Viewer):
    """The filters: ``User``, ``Host``, one multi-select per product, ``Idle over``, ``Run``."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state the options edit.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        ex = self._ex
        self.user_input = pn.widgets.TextInput(
            label="User",
            placeholder="all users",
            value=ex.user,
            width=200,
            stylesheets=INPUT_CSS,
        )
        self.host_input = pn.widgets.TextInput(
            label="Host", placeholder="all hosts", value=ex.host, width=150, stylesheets=INPUT_CSS
        )
        self.idle_select = pn.widgets.Select(
            label="Idle over", options=dict(IDLE_CHOICES), value=ex.idle_over, width=110
        )
        self.run_button = pn.widgets.Button(label="Run", color="primary", width=90)
        self.product_inputs: dict[str, pn.widgets.MultiChoice] = {}
        self._syncing = False
        self.user_input.param.watch(partial(self._text_changed, "user"), ["value", "value_input"])
        self.host_input.param.watch(partial(self._text_changed, "host"), ["value", "value_input"])
        self.idle_select.param.watch(self._idle_changed, "value")
        self.run_button.on_click(self._run)
        self.on_run: list[Callable[[], None]] = []  # called after a Run the user asked for
        ex.param.watch(lambda e: setattr(self.run_button, "loading", e.new), "busy")
        ex.param.watch(self._build_products, ["products", "product_types"])
        ex.param.watch(self._show_filters, ["license_types", "user", "host", "idle_over"])
        self.code = text(css_classes=["licusage-filter"], margin=(0, 10))
        ex.param.watch(self._show_code, ["user", "host", "license_types", "idle_over", "products"])
        self._show_code()
        self._layout = pn.FlexBox(sizing_mode="stretch_width", align_items="flex-end")
        self.types_fold = fold("License types")
        self._panel = pn.Column(sizing_mode="stretch_width")
        self._build_products()
        self._show_filters()

    def _show_code(self, *_: Any) -> None:
        """Echo the filter the server holds, as the notebook call that gives the same rows,
        behind a small "Use in a notebook" disclosure."""
        code = escaped(self._ex.filter_code())
        self.code.value = (
            '<details><summary style="font-size: 12px; color: #555">Use in a notebook</summary>'
            f'<code title="The same rows in a notebook">{code}</code></details>'
        )

    def _text_changed(self, name: str, *events: param.parameterized.Event) -> None:
        # the browser sends value and value_input in one batch on Enter: one call, both events
        if not self._syncing:
            setattr(self._ex, name, events[-1].new or "")

    def _idle_changed(self, event: param.parameterized.Event) -> None:
        if not self._syncing:
            self._ex.idle_over = event.new or ""

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
                width=190,
            )
            widget.param.watch(lambda e, p=product: self._types_changed(p, e.new), "value")
            self.product_inputs[product] = widget
        inputs = list(self.product_inputs.values())
        folded = len(inputs) > MANY_PRODUCTS
        inline = [] if folded else inputs
        self._layout.objects = [
            self.user_input,
            *inline,
            self.host_input,
            self.idle_select,
            self.run_button,
        ]
        self.types_fold.objects = (
            [pn.FlexBox(*inputs, sizing_mode="stretch_width")] if folded else []
        )
        shown = [self._layout, self.types_fold] if folded else [self._layout]
        self._panel.objects = [*shown, self.code]
        self._title_fold()

    def _title_fold(self) -> None:
        """The folded filters' title (HTML): how many products, which have types chosen."""
        chosen = [p for p in self.product_inputs if self._ex.license_types.get(p)]
        title = f"License types of {len(self.product_inputs)} products"
        if chosen:
            more = f" and {len(chosen) - 3} more" if len(chosen) > 3 else ""
            title += f" · chosen for {escaped(', '.join(chosen[:3]))}{more}"
        self.types_fold.title = title

    def _show_filters(self, *_: Any) -> None:
        """Reflect filters changed elsewhere (a seat gauge, the URL) in the widgets."""
        ex = self._ex
        self._syncing = True
        try:
            for product, widget in self.product_inputs.items():
                wanted = list(ex.license_types.get(product, []))
                if list(widget.value) != wanted:
                    widget.value = wanted
            for text_input, text in ((self.user_input, ex.user), (self.host_input, ex.host)):
                if text_input.value_input != text and text_input.value != text:
                    text_input.value = text
            options = dict(IDLE_CHOICES)
            if ex.idle_over not in options.values():  # a duration from the URL, e.g. 90m
                options[ex.idle_over] = ex.idle_over
            if options != self.idle_select.options:
                self.idle_select.options = options
            self.idle_select.value = ex.idle_over
            self._title_fold()
        finally:
            self._syncing = False

    async def _run(self, _event: Any = None) -> None:
        if await self._ex.run_async():
            for callback in self.on_run:
                callback()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel


class SeatsView(Viewer):
    """Seats in use against seats owned per pool, denials today; a click filters the table."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose pools it shows.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self._cards = pn.FlexBox(sizing_mode="stretch_width")
        self.seats_fold = fold("Seats")
        self._panel = pn.Column(sizing_mode="stretch_width")
        self.buttons: dict[tuple[str, str], pn.widgets.Button] = {}
        self._gauges: dict[tuple[str, str], tuple[pn.indicators.Progress, Any]] = {}
        self.on_filter: list[Callable[[], None]] = []  # called after a click filtered the table
        self._ex.param.watch(self._build, "pools")
        self._build()

    @staticmethod
    def level(in_use: int, seats: int) -> str:
        """``danger`` for a pool nearly full (or over: :data:`~licusage.analytics.NEAR_FULL`),
        ``warning`` when busy (:data:`~licusage.analytics.BUSY`), ``light`` for no seats and
        nobody using them, else ``success``."""
        if seats == in_use == 0:  # an expired license nobody asks for: not a full pool
            return "light"
        if in_use * NEAR_FULL[1] >= seats * NEAR_FULL[0]:
            return "danger"
        return "warning" if in_use * BUSY[1] >= seats * BUSY[0] else "success"

    def _filter(self, product: str, license_type: str, _event: Any = None) -> None:
        # served: the paged read in a worker thread (the event loop serves other pages meanwhile)
        soon(
            partial(self._filter_async, product, license_type),
            partial(self._filter_now, product, license_type),
        )

    async def _filter_async(self, product: str, license_type: str) -> None:
        if await self._ex.filter_pool_async(product, license_type):
            self._filtered()

    def _filter_now(self, product: str, license_type: str) -> None:
        if self._ex.filter_pool(product, license_type):
            self._filtered()

    def _filtered(self) -> None:
        for callback in self.on_filter:
            callback()

    def _build(self, *_: Any) -> None:
        """Draw one card per pool; when the pools are those drawn, update the cards in place
        (a click on a gauge is never lost to a card being replaced)."""
        pools = self._ex.pools
        records = [] if pools is None else pools.to_dict("records")
        keys = [(str(p["product"]), str(p["license_type"])) for p in records]
        if keys != list(self.buttons):
            self.buttons, self._gauges = {}, {}
            self._cards.objects = [self._card(*key) for key in keys]
            folded = len(keys) > MANY_POOLS
            self.seats_fold.objects = [self._cards] if folded else []
            self._panel.objects = [self.seats_fold if folded else self._cards]
        levels: Counter[str] = Counter()
        for key, pool in zip(keys, records, strict=True):
            in_use, known = int(pool["in_use"]), not pd.isna(pool["seats"])
            seats = int(pool["seats"]) if known else 0
            denied = int(pool["denials_today"])
            level = self.level(in_use, seats) if known else "secondary"
            levels[level] += 1
            bar, line = self._gauges[key]
            bar.param.update(max=max(seats, 1), bar_color=level)
            bar.value = min(in_use, bar.max) if known else 0  # in use of 0 seats: a full bar
            details = f" · {denied:,} denied today" if denied else ""
            reserved = int(pool.get("reserved", 0))
            if reserved:
                details = f" ({reserved:,} reserved){details}"
            for note in (
                fmt.seats_drop_note(pool, self._ex.zone),
                fmt.expiry_note(pool.get("expires_at"), self._ex.zone),
            ):
                if note:  # a date is not broken across lines on a narrow screen
                    details += f' · <span style="white-space: nowrap">{note}</span>'
            of_seats = f"/ {seats:,} seats in use" if known else "in use · seats unknown"
            line.param.update(
                value=f"<b>{in_use:,}</b> {of_seats}{details}",
                css_classes=[f"seats-{level}"],
            )
        self.seats_fold.title = self.summary(len(keys), levels)

    @staticmethod
    def summary(pools: int, levels: Mapping[str, int]) -> str:
        """The folded gauges' title: how many pools, and how many of them are nearly full,
        busy, of unknown seats or without seats (`levels`: :meth:`level` or ``secondary``
        -> pools)."""
        words = {
            "danger": "nearly full",
            "warning": "busy",
            "secondary": "seats unknown",
            "light": "without seats",
        }
        counts = [f"{levels[level]:,} {word}" for level, word in words.items() if levels.get(level)]
        return f"Seats of {pools:,} pools" + (f": {', '.join(counts)}" if counts else "")

    def _card(self, product: str, license_type: str) -> pn.Column:
        button = pn.widgets.Button(
            label=f"{product} · {license_type}",
            color="light",
            sizing_mode="stretch_width",
            stylesheets=[":host .bk-btn { font-size: 12px; text-align: left; }"],
            description="Show the sessions holding this license",
        )
        button.on_click(partial(self._filter, product, license_type))
        self.buttons[(product, license_type)] = button
        bar = pn.indicators.Progress(value=0, max=1, sizing_mode="stretch_width", height=12)
        line = text(margin=(0, 10))
        self._gauges[(product, license_type)] = (bar, line)
        return pn.Column(
            button,
            bar,
            line,
            width=250,
            styles={"border": "1px solid #ddd", "border-radius": "6px"},
            margin=4,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel


def fold(title: str) -> pn.Card:
    """A folded section that opens on a click of its `title` (HTML: escape stored text)."""
    return pn.Card(
        title=title,
        collapsed=True,
        sizing_mode="stretch_width",
        margin=(5, 10),
        header_background="#f8f9fa",
    )


def text(value: str = "", **params: Any) -> pn.widgets.StaticText:
    """A line of HTML (built by this module, stored text escaped): a plain Bokeh ``Div``, so
    the page needs no Markdown renderer nor MathJax bundle."""
    return pn.widgets.StaticText(value=value, **params)


class LogoutDialog(Viewer):
    """The confirmation: the sessions (or how many), the licenses freed, Logout/Cancel.

    Escape, the close button and a click beside the dialog cancel it.
    """

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose selection ends.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self.preview: LogoutPreview | None = None
        self.message = text(sizing_mode="stretch_width")
        self.logout_button = pn.widgets.Button(label="Logout", color="danger", width=110)
        self.cancel_button = pn.widgets.Button(label="Cancel", width=110)
        self.logout_button.on_click(self._logout)
        self.cancel_button.on_click(lambda _e: self.close())
        self.modal = pn.Modal(
            pn.Column(
                text("<h3>Logout Session</h3>"),
                self.message,
                pn.Row(self.logout_button, self.cancel_button),
                width=480,
            ),
            show_close_button=True,
            background_close=True,
        )

    def open(self, preview: LogoutPreview) -> None:
        """Show the dialog for `preview` (see :func:`licusage.actions.preview_logout`)."""
        self.preview = preview
        # names come from the store: shown as plain text, never as markup
        parts = [plain_html([preview.text()])]
        if 0 < len(preview.sessions) <= FEW_SESSIONS:
            rows = ["<tr><th>User</th><th>Host</th><th>ID</th></tr>"]
            for session_id, user, host in preview.sessions[
                ["session_id", "user", "host"]
            ].itertuples(index=False):
                host_text = "" if host is None or host is pd.NA else str(host)
                rows.append(
                    f"<tr><td>{escaped(user)}</td><td>{escaped(host_text)}</td>"
                    f"<td>{int(session_id)}</td></tr>"
                )
            parts.append('<table class="licusage-targets">' + "".join(rows) + "</table>")
        if preview.spared:
            own = len(preview.spared)
            parts.append(
                f"Your own {plural(own, 'session')} {'stays' if own == 1 else 'stay'} logged in."
            )
        if preview.already_ended:
            ended = len(preview.already_ended)
            parts.append(
                f"{plural(ended, 'session')} {'has' if ended == 1 else 'have'} already ended."
            )
        if preview.unknown:
            gone = len(preview.unknown)
            parts.append(
                f"{plural(gone, 'session')} no longer {'exists' if gone == 1 else 'exist'}."
            )
        servers = sorted(set(preview.on_servers.values()))
        if servers:
            parts.append(
                f"{plural(len(preview.on_servers), 'session')} of "
                f"{escaped(', '.join(servers))}: removed on the license server first."
            )
        if preview.without_removal:
            one = len(preview.without_removal) == 1
            parts.append(
                f"<b>{escaped(', '.join(preview.without_removal))} "
                f"{'has' if one else 'have'} no removal command: "
                f"{'its' if one else 'their'} sessions stay logged in</b> (an admin sets one "
                "with <code>licusage servers set-remove-command</code>)."
            )
        if len(preview.licenses):
            parts.append(
                "This frees:<ul>"
                + "".join(
                    f"<li>{escaped(row.product)} · {escaped(row.license_type)}: {row.count:,}</li>"
                    for row in preview.licenses.itertuples(index=False)
                )
                + "</ul>"
            )
        else:
            parts.append("These sessions hold no licenses.")
        self.message.value = "".join(f"<p>{p}</p>" if not p.startswith("<") else p for p in parts)
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
    """One page of sessions with selection, the pager, the count line, the "as of" stamp and
    auto-refresh, CSV download and Logout Session. Paging and sorting (click a column header)
    are done by the database."""

    explorer = param.ClassSelector(class_=SessionExplorer, doc="The state whose result it shows.")
    dialog = param.ClassSelector(class_=LogoutDialog, doc="The confirmation the logout opens.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._ex: SessionExplorer = params["explorer"]
        self._dialog: LogoutDialog = params["dialog"]
        ex = self._ex
        self.table = pn.widgets.Tabulator(
            self._frame(),
            pagination=None,
            selectable="checkbox",
            show_index=False,
            disabled=True,
            formatters={"Idle": HTMLTemplateFormatter(template=fmt.IDLE_TEMPLATE)},
            sizing_mode="stretch_width",
            # every column as wide as its longest cell (nothing cut off); the table scrolls
            # sideways inside itself when the window is narrower than its columns
            layout="fit_data_fill",
            min_width=300,
            header_align="left",
            configuration={
                # one page is 25 rows: draw them all, rather than only those Tabulator's
                # virtual renderer sees in its viewport (none while the page is laid out)
                "renderVertical": "basic",
                "placeholder": EMPTY,
                "headerSortTristate": False,
            },
        )
        self.summary = text(margin=(5, 10), css_classes=["licusage-count"])
        self.stamp = text(margin=(5, 10), styles={"color": "#555"})
        self.refresh_select = pn.widgets.Select(
            label="Auto-refresh", options=REFRESH_CHOICES, value=0, width=100
        )
        self.selection_text = text(margin=(5, 10))
        self.select_all_button = pn.widgets.Button(label="Select all matching", disabled=True)
        self.clear_button = pn.widgets.Button(label="Clear selection", disabled=True)
        self.logout_button = pn.widgets.Button(
            label="Logout Session", color="danger", disabled=True
        )
        self.download = pn.widgets.FileDownload(
            callback=self._csv, filename="sessions.csv", label="Download CSV", disabled=True
        )
        self.previous_button = pn.widgets.Button(label="\u2039 Previous", disabled=True, width=100)
        self.next_button = pn.widgets.Button(label="Next \u203a", disabled=True, width=100)
        self.page_text = text(margin=(5, 10))
        self.table.param.watch(self._selection_changed, "selection")
        self.table.param.watch(self._sorted, "sorters")
        self.select_all_button.on_click(lambda _e: ex.select_all_matching())
        self.clear_button.on_click(lambda _e: ex.select([]))
        self.logout_button.on_click(self._logout_clicked)
        self.previous_button.on_click(lambda _e: ex.go_to_page(ex.page - 1))
        self.next_button.on_click(lambda _e: ex.go_to_page(ex.page + 1))
        self.refresh_select.param.watch(self._auto_refresh, "value")
        self._periodic: Any = None
        ex.param.watch(self._show_result, "result")
        ex.param.watch(self._show_selection, ["selected_ids", "all_matching"])
        # the loading overlay covers the table's box, not the table itself (toggling the
        # Tabulator's own `loading` while its data changes can leave it without rows)
        self.table_box = pn.Column(self.table, sizing_mode="stretch_width", margin=0)
        ex.param.watch(lambda e: setattr(self.table_box, "loading", e.new), "busy")
        wrap = {"flex_wrap": "wrap", "align_items": "center"}
        self._layout = pn.Column(
            pn.FlexBox(
                self.summary, self.stamp, self.refresh_select, sizing_mode="stretch_width", **wrap
            ),
            pn.FlexBox(
                self.selection_text,
                self.select_all_button,
                self.clear_button,
                self.download,
                self.logout_button,
                sizing_mode="stretch_width",
                **wrap,
            ),
            self.table_box,
            pn.Row(self.previous_button, self.page_text, self.next_button),
            sizing_mode="stretch_width",
        )
        self._show_result()

    def _frame(self) -> pd.DataFrame:
        if self._ex.result is not None:
            return self._ex.result
        columns = [*fmt.BASE_HEADERS.values(), *self._ex.products]
        return pd.DataFrame(columns=columns, index=pd.Index([], name="Session", dtype="int64"))

    def _show_result(self, *_: Any) -> None:
        ex = self._ex
        frame = self._frame()
        self._updating_selection = True
        try:
            # the counts arriving show the same page again: its rows are not sent (and drawn)
            # a second time, which would drop a tick made meanwhile
            if frame is not self.table.value:
                self.table.value = frame
            self.table.selection = self._ticked_rows(frame)
        finally:
            self._updating_selection = False
        shown = ex.result is not None
        self.summary.value = (EMPTY if not ex.total else ex.summary) if shown else ""
        as_of = ex.as_of
        self.stamp.value = (
            f"as of {fmt.local_time(as_of, ex.zone)}" if isinstance(as_of, datetime) else ""
        )
        self.download.disabled = not shown
        pages = max(1, -(-ex.total // ex.page_size))
        if ex.counting:  # not counted yet: a full page may have a next one
            pages = ex.page + (len(frame) >= ex.page_size)
        first = (ex.page - 1) * ex.page_size + 1
        self.page_text.value = (
            f"Page {ex.page:,}{'' if ex.counting else f' of {pages:,}'} · rows {first:,}\u2013{first + len(frame) - 1:,}"
            if len(frame)
            else ""
        )
        self.previous_button.disabled = ex.page <= 1
        self.next_button.disabled = ex.page >= pages
        self.select_all_button.label = f"Select all {ex.total:,} matching"
        self.select_all_button.disabled = not (shown and ex.total) or ex.counting
        self._show_selection()

    def _ticked_rows(self, frame: pd.DataFrame) -> list[int]:
        ex = self._ex
        if ex.all_matching:
            return list(range(len(frame)))
        rows = frame.index.get_indexer(pd.Index(ex.selected_ids, dtype="int64"))
        return sorted(int(r) for r in rows if r >= 0)

    _updating_selection = False

    def _selection_changed(self, event: param.parameterized.Event) -> None:
        if self._updating_selection:
            return
        frame = self.table.value
        ids = [int(i) for i in frame.index[list(event.new)]] if len(frame) else []
        self._ex.tick_page(ids)

    def _sorted(self, event: param.parameterized.Event) -> None:
        keys = fmt.sort_keys(list(event.new or []), self._ex.products)
        if keys != [tuple(s) for s in self._ex.sort]:
            self._ex.sort_by(keys)

    def _show_selection(self, *_: Any) -> None:
        ex = self._ex
        count = ex.selection_count
        if ex.all_matching:
            self.selection_text.value = f"<b>All {count:,} matching sessions selected</b>"
        else:
            self.selection_text.value = f"{count:,} selected" if count else ""
        wanted = self._ticked_rows(self.table.value)
        if sorted(self.table.selection) != wanted:
            self._updating_selection = True
            try:
                self.table.selection = wanted
            finally:
                self._updating_selection = False
        self.clear_button.disabled = not count
        self.logout_button.disabled = not (count and ex.identity.may_logout)

    def _auto_refresh(self, event: param.parameterized.Event) -> None:
        """Read the page again every 10 s or minute (off by default); the selection stays."""
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None
        if event.new:
            self._periodic = pn.state.add_periodic_callback(
                self._refresh, period=int(event.new) * 1000
            )

    def _refresh(self) -> None:
        # a periodic callback runs holding the document's lock, which the refresh needs for its
        # result: it is started as a task of its own instead of being awaited here
        if not self._ex.busy:  # one refresh at a time on a slow store
            pn.state.execute(self._refresh_now)

    async def _refresh_now(self) -> None:
        await self._ex.refresh_async()

    def _logout_clicked(self, _event: Any = None) -> None:
        ex = self._ex
        if not ex.selection_count:
            return
        if not ex.may_logout():
            # the button is disabled for viewers; a tampered browser still reaches the server,
            # which refuses (and audits) through authorized_logout
            ex.logout()
            return
        preview = ex.preview_logout()
        if preview is not None:
            self._dialog.open(preview)

    def _csv(self) -> Any:
        """The whole result as CSV, written from the database in batches by the rules of
        :mod:`licusage.export` (the same file as ``licusage sessions --format csv``)."""
        return self._ex.export_csv()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


__all__ = ["PAGE_SIZE", "LogoutDialog", "OptionsView", "ResultsView", "SeatsView"]
