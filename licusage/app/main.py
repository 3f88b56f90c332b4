"""Building the dashboard page: a template with one tab per view, Sessions first."""

from __future__ import annotations

import html
import logging
import os
import threading
from typing import Any

import panel as pn
from sqlalchemy.engine import Engine

from .. import db
from ..errors import StoreUnavailable
from .audit import AuditView
from .explorer import SessionExplorer
from .format import local_zone
from .identity import Identity, current_identity
from .utilisation import UtilisationView
from .views import LogoutDialog, OptionsView, ResultsView, SeatsView

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


def _who(identity: Identity) -> pn.pane.HTML:
    user = html.escape(identity.user)
    text = f"{user} ({identity.role})"
    if identity.signed_in:
        text += ' · <a href="./logout" style="color: inherit">Sign out</a>'
    return pn.pane.HTML(f'<span class="licusage-who">{text}</span>', styles={"color": "white"})


def create_app(
    engine: Engine | str | None = None, identity: Identity | None = None
) -> pn.template.BaseTemplate:
    """The dashboard page for one browser session.

    `engine`: an Engine, a store URL, or None for ``$LICUSAGE_DATABASE_URL`` / the embedded
    store. `identity`: who acts (tests); by default the signed-in user, or the local OS user as
    admin on loopback (see :mod:`licusage.app.identity`).
    """
    pn.extension("tabulator", "modal", notifications=True, browser_info=True)
    if not isinstance(engine, Engine):
        engine = get_engine(engine)
    who = identity or current_identity(engine)
    browser = pn.state.browser_info
    zone = local_zone(browser.timezone if browser is not None else None)
    explorer = SessionExplorer(engine, who, zone=zone)
    sessions = SessionsTab(explorer)
    tabs = pn.Tabs(("Sessions", sessions), dynamic=True, sizing_mode="stretch_width")
    # --- more tabs: one line each, owned by the engineers of those views --------------------
    utilisation = UtilisationView(engine, zone=zone)  # licusage.app.utilisation
    utilisation.defer()  # read when the tab is first shown, not before the first Run
    tabs.append(("Utilisation", utilisation))
    tabs.append(("Audit", AuditView(engine)))  # licusage.app.audit
    # --- end of more tabs ---------------------------------------------------------------------

    def tab_shown(event: Any) -> None:
        if tabs._names[event.new] == "Utilisation":
            utilisation.shown()

    tabs.param.watch(tab_shown, "active")
    template = pn.template.BootstrapTemplate(
        title=TITLE, header=[pn.HSpacer(), _who(who)], main=[tabs]
    )
    template.explorer = explorer  # type: ignore[attr-defined]  # for tests and notebooks
    if browser is not None:
        browser.param.watch(lambda e: setattr(explorer, "zone", local_zone(e.new)), "timezone")
    return template
