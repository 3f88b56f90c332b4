"""Building the dashboard page: a template with one tab per view, Sessions first."""

from __future__ import annotations

import html
import logging
import os
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode

import panel as pn
import param
from panel.custom import JSComponent
from sqlalchemy.engine import Engine

from .. import db
from ..errors import StoreUnavailable
from .explorer import SessionExplorer
from .format import local_zone
from .identity import Identity, current_identity
from .lifecycle import LazyTab as LazyTab  # its home is lifecycle; tests import it here
from .lifecycle import lazy_tabs
from .views import LogoutDialog, OptionsView, ResultsView, SeatsView, text

log = logging.getLogger(__name__)
TITLE = "Session License Usage"

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """One Engine per store URL and process (safe after ``--num-procs`` forks the server).

    Creates the schema of a new store when it can; an unreachable database still gives an
    Engine, whose queries fail (and are reported) until the database is back.
    """
    resolved = db.resolve_url(url)
    key = (os.getpid(), resolved)
    with _engines_lock:
        if key not in _engines:
            try:
                _engines[key] = db.connect(resolved)
            except StoreUnavailable as error:
                log.warning("%s", error)
                return db.create_engine(resolved)
        return _engines[key]


class SessionsTab(pn.viewable.Viewer):
    """The Sessions tab: options, seats, results and the logout dialog over one explorer."""

    def __init__(self, explorer: SessionExplorer, **params: Any) -> None:
        super().__init__(**params)
        self.explorer = explorer
        self.options = OptionsView(explorer=explorer)
        self.seats = SeatsView(explorer=explorer)
        self.dialog = LogoutDialog(explorer=explorer)
        self.results = ResultsView(explorer=explorer, dialog=self.dialog)
        self._layout = pn.Column(
            self.options, self.seats, self.results, self.dialog, sizing_mode="stretch_width"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


class PageEvents(JSComponent):
    """Browser events the server needs: Back/Forward changing the page's query string (the
    filter in the URL; ``search`` follows ``window.location.search`` on ``popstate``) and
    Escape (``escapes`` counts the presses: it closes the confirmation dialog)."""

    search = param.String(default="", doc="The query string after Back/Forward.")
    escapes = param.Integer(default=0, doc="How many times Escape was pressed.")

    _esm = """
    export function render({ model }) {
      const popped = () => { model.search = window.location.search }
      const pressed = (event) => { if (event.key === "Escape") { model.escapes += 1 } }
      window.addEventListener("popstate", popped)
      document.addEventListener("keydown", pressed)
      model.on("remove", () => {
        window.removeEventListener("popstate", popped)
        document.removeEventListener("keydown", pressed)
      })
      return document.createElement("span")
    }
    """


def url_filter(args: dict[str, list[bytes]] | None) -> dict[str, str]:
    """The page request's query arguments (``pn.state.session_args``) as text, first value."""
    return {k: v[0].decode("utf-8", "replace") for k, v in (args or {}).items() if v}


class UrlSync:
    """The filter in the page's URL: read when the page opens, written (a new history entry)
    by each Run the user asks for, read again on Back/Forward."""

    def __init__(self, explorer: SessionExplorer) -> None:
        self.explorer = explorer
        self.listener = PageEvents(visible=False)
        self.listener.param.watch(self._went_back, "search")

    def push(self) -> None:
        """Put the current filter in the URL unless it is there already."""
        location = pn.state.location
        if location is None:
            return
        search = urlencode(self.explorer.query_params())
        search = f"?{search}" if search else ""
        if location.search != search:
            location.search = search

    async def _went_back(self, event: param.parameterized.Event) -> None:
        params = dict(parse_qsl(str(event.new).lstrip("?")))
        location = pn.state.location
        if location is not None:
            location.param.update(search=str(event.new))  # already the browser's URL
        self.explorer.apply_query_params(params)
        await self.explorer.run_async()


def _who(identity: Identity) -> pn.widgets.StaticText:
    user = html.escape(identity.user)
    who = f"{user} ({identity.role})"
    if identity.signed_in:
        who += ' · <a href="./logout" style="color: inherit">Sign out</a>'
    return text(f'<span class="licusage-who">{who}</span>', styles={"color": "white"})


def create_app(engine: Engine | str | None = None, identity: Identity | None = None) -> pn.Column:
    """The dashboard page for one browser session (a plain layout, no template: the page
    loads only the bundles its widgets use).

    `engine`: an Engine, a store URL, or None for ``$LICUSAGE_DATABASE_URL`` / the embedded
    store. `identity`: who acts (tests); by default the signed-in user, or the local OS user as
    admin on loopback (see :mod:`licusage.app.identity`).

    The page opens with the result of the filter in its URL (``?user=smith&idle_over=2h&Case+
    Management=Concurrent+User``; none: every active session), read while the page is built
    so that its first rows come with the page itself.
    """
    pn.extension("tabulator", "modal", notifications=True, browser_info=True)
    if not isinstance(engine, Engine):
        engine = get_engine(engine)
    who = identity or current_identity(engine)
    browser = pn.state.browser_info
    zone = local_zone(browser.timezone if browser is not None else None)
    explorer = SessionExplorer(engine, who, zone=zone)
    explorer.apply_query_params(url_filter(pn.state.session_args))
    if explorer.open():

        async def counted() -> None:
            await explorer.finish_open()

        pn.state.onload(counted)
    sessions = SessionsTab(explorer)
    urls = UrlSync(explorer)
    sessions.options.on_run.append(urls.push)
    sessions.seats.on_filter.append(urls.push)
    urls.listener.param.watch(lambda _e: sessions.dialog.close(), "escapes")
    # the other tabs are built when first shown and read when drawn (licusage.app.lifecycle):
    # one line each, owned by the engineers of those views
    tabs, lazy = lazy_tabs(
        ("Sessions", sessions),
        {
            "Utilisation": lambda: _utilisation(engine, explorer),
            "Audit": lambda: _audit(engine, explorer),
            "Alerts": lambda: _alerts(engine, explorer),
        },
        sizing_mode="stretch_width",
    )
    # the title, and who is signed in at the right; on a narrow screen, below it
    header = pn.FlexBox(
        text(f"<h1 style='margin: 0; font-size: 1.5rem; color: white'>{TITLE}</h1>"),
        _who(who),
        flex_wrap="wrap",
        justify_content="space-between",
        align_items="center",
        styles={"background": "#0072b5", "padding": "8px 16px"},
        sizing_mode="stretch_width",
        margin=0,
    )
    page = pn.Column(
        header,
        pn.Column(tabs, urls.listener, sizing_mode="stretch_width", margin=(0, 10)),
        sizing_mode="stretch_width",
        margin=0,
    )
    page.explorer = explorer  # type: ignore[attr-defined]  # for tests and notebooks
    page.tabs = tabs  # type: ignore[attr-defined]
    page.lazy_tabs = lazy  # type: ignore[attr-defined]
    if pn.state.curdoc is not None:
        pn.state.curdoc.title = TITLE
    if browser is not None:
        browser.param.watch(lambda e: explorer.set_zone(local_zone(e.new)), "timezone")
    return page


def _utilisation(engine: Engine, explorer: SessionExplorer) -> pn.viewable.Viewer:
    from .utilisation import UtilisationView  # holoviews: imported when first needed

    return UtilisationView(engine, zone=explorer.zone)


def _audit(engine: Engine, explorer: SessionExplorer) -> pn.viewable.Viewer:
    from .audit import AuditView

    return AuditView(engine, zone=explorer.zone)


def _alerts(engine: Engine, explorer: SessionExplorer) -> pn.viewable.Viewer:
    from .alerts import AlertsView  # licusage.app.alerts

    return AlertsView(engine, zone=explorer.zone)
