"""How a dashboard view lives: one way to read the store lazily and in the background, one way
to tell the user what failed.

- :class:`Notices`: every notification of the dashboard (plain text, never markup: names come
  from the store) and the one wording of a failure (``"Audit: the database is unavailable
  (…)"``). The Sessions explorer and every tab report through it.
- :class:`StoreView`: a view over the store. A view says what to read (:meth:`StoreView.read`:
  store calls only, safe in any thread, no widget touched) and how to draw it
  (:meth:`StoreView.draw`); it has no lazy logic of its own. The base reads once when the view
  is first drawn (a tab: when first shown) and again on :meth:`StoreView.reload` (Refresh, a
  changed filter). Served, the read runs in a worker thread with the view's loading indicator
  on, so other browser sessions are not kept waiting, and what it read is drawn in one document
  update; in a notebook or a test it runs at once.
- :class:`LazyTab` / :func:`lazy_tabs`: a tab whose view is built the first time it is shown.

A new tab is one line in :func:`licusage.app.main.create_app`'s ``lazy`` mapping: a title and a
function that builds its :class:`StoreView`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar, TypeVar

import panel as pn
import param
from panel.viewable import Viewable, Viewer
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from ..db import describe_db_error
from ..errors import LicusageError, StoreUnavailable
from .text import escaped

log = logging.getLogger(__name__)
T = TypeVar("T")

# how long a notification stays on screen (ms): errors longer
_DURATIONS = {"error": 8000}
_DURATION = 4000


def served() -> bool:
    """True while building or updating a page served to a browser (a Bokeh server session);
    False in a notebook, a test, or before the server has a session."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


async def in_document(func: Callable[[], T]) -> T:
    """Run `func` as a callback of the served document (holding its lock: the changes it makes
    reach the browser as one update); directly when not served."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return func()
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def callback() -> None:
        try:
            future.set_result(func())
        except Exception as error:  # pragma: no cover - func reports its own errors
            future.set_exception(error)

    doc.add_next_tick_callback(callback)
    return await future


def soon(later: Callable[[], Coroutine[Any, Any, Any]], now: Callable[[], Any]) -> None:
    """Served: run the coroutine function `later` on the server's event loop (its reads in
    worker threads, the page not blocked); elsewhere call `now()` at once."""
    if served():
        pn.state.execute(later)
    else:
        now()


def failure_text(what: str, error: BaseException, engine: Engine | None = None) -> str:
    """The one wording of a failure: "`what`: reason" (a message, never a traceback)."""
    if isinstance(error, sa_exc.DBAPIError):
        error = StoreUnavailable(describe_db_error(error, engine))
    if isinstance(error, StoreUnavailable):
        return f"{what}: the database is unavailable ({error})"
    if isinstance(error, LicusageError):
        return f"{what}: {error}"
    log.error("%s failed", what, exc_info=error)
    return f"{what}: unexpected error ({type(error).__name__})"


class Notices(param.Parameterized):
    """Notifications of one view or explorer: Panel's (as plain text), or ``notices_to``'s."""

    last_error = param.String(default="", doc="The last failure shown to the user.")

    # where notifications go instead of the page: a callable(level, message) (tests, notebooks)
    notices_to: Callable[[str, str], None] | None = None

    def notify(self, level: str, message: str) -> None:
        """Show `message` as a notification (``info``/``success``/``warning``/``error``), as
        plain text (the page's notifications draw HTML)."""
        if level == "error":
            self.last_error = message
        if self.notices_to is not None:
            self.notices_to(level, message)
            return
        notifications = pn.state.notifications
        if notifications is not None:
            getattr(notifications, level)(
                escaped(message), duration=_DURATIONS.get(level, _DURATION)
            )

    def report(self, what: str, error: BaseException) -> bool:
        """Notify that `what` failed (see :func:`failure_text`); returns False."""
        engine = getattr(self, "engine", None)  # names the store in a driver error
        self.notify("error", failure_text(what, error, engine))
        return False


class StoreView(Viewer, Notices):
    """A view that reads the store: :meth:`read` what to show, :meth:`draw` it.

    Subclasses set ``layout`` (what the view draws) in their ``__init__`` and implement
    :meth:`read` and :meth:`draw`; ``title`` names the view in its notifications.
    """

    title: ClassVar[str] = ""

    def __init__(self, engine: Engine, **params: Any) -> None:
        super().__init__(**params)
        self.engine = engine
        self.layout: Viewable = pn.Column(sizing_mode="stretch_width")
        self.has_read = False  # a read was started (the view was drawn or refreshed)
        self._generation = 0  # the latest read; an earlier one finishing later is dropped

    # --- what a view says ---------------------------------------------------------------
    def read(self) -> Any:
        """Read what the view shows from the store (any thread; no widget changes)."""
        raise NotImplementedError

    def draw(self, data: Any) -> None:
        """Draw what :meth:`read` returned."""
        raise NotImplementedError

    def draw_failure(self, error: BaseException) -> None:
        """Draw a failed read beside its notification (by default: nothing more)."""

    # --- the lifecycle -------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read and redraw now, in this thread; False (and a notification) on failure."""
        self.has_read = True
        self._generation += 1
        try:
            data = self.read()
        except Exception as error:
            return self._failed(error)
        return self._shown(data)

    async def refresh_async(self) -> bool:
        """:meth:`refresh` with the read in a worker thread and the loading indicator on; drawn
        in one document update, unless a later read started meanwhile (then False)."""
        self.has_read = True
        self._generation += 1
        generation = self._generation
        self.layout.loading = True
        try:
            data, error = await asyncio.to_thread(self.read), None
        except Exception as failure:
            data, error = None, failure

        def draw() -> bool:
            if generation != self._generation:
                return False  # a later read (Refresh, a filter) draws instead
            self.layout.loading = False
            if error is not None:
                return self._failed(error)
            return self._shown(data)

        return await in_document(draw)

    def reload(self) -> None:
        """Read again (Refresh, a changed filter): in the background when served, else now."""
        soon(self.refresh_async, self.refresh)

    def _failed(self, error: BaseException) -> bool:
        self.report(self.title, error)
        self.draw_failure(error)
        return False

    def _shown(self, data: Any) -> bool:
        self.last_error = ""
        try:
            self.draw(data)
        except Exception as error:  # a fault in drawing: a notification, not a blank tab
            return self._failed(error)
        return True

    @param.depends()  # evaluated once, when first drawn
    def _first_draw(self) -> Viewable:
        if not self.has_read:
            self.reload()
        return self.layout

    def __panel__(self) -> Viewable:
        # drawn lazily: the first read starts when a browser (or a notebook) first draws the
        # view, so a page that never shows it reads nothing, and plots are made for a view that
        # is on screen (drawn at their size)
        return pn.param.ParamMethod(self._first_draw, lazy=True, sizing_mode="stretch_width")


class LazyTab(Viewer):
    """A tab whose view is built the first time the tab is shown (:meth:`shown`): a page
    that opens on another tab builds, sends and draws nothing of it."""

    def __init__(self, build: Callable[[], Viewer], **params: Any) -> None:
        super().__init__(**params)
        self._build = build
        self.view: Viewer | None = None
        self._holder = pn.Column(sizing_mode="stretch_width")

    def shown(self) -> Viewer:
        """Build the view (once) and put it in the tab (where it reads when drawn)."""
        if self.view is None:
            self.view = self._build()
            self._holder.objects = [self.view]
        return self.view

    def __panel__(self) -> Viewable:
        return self._holder


def lazy_tabs(
    first: tuple[str, Any], builders: Mapping[str, Callable[[], Viewer]], **params: Any
) -> tuple[pn.Tabs, dict[str, LazyTab]]:
    """Tabs: `first` (title, view) built now and shown, then one :class:`LazyTab` per title of
    `builders`, built when first shown."""
    lazy = {title: LazyTab(build) for title, build in builders.items()}
    tabs = pn.Tabs(first, *lazy.items(), dynamic=True, **params)
    by_position = dict(enumerate([None, *lazy.values()]))

    def tab_shown(event: param.parameterized.Event) -> None:
        tab = by_position.get(event.new)
        if tab is not None:
            tab.shown()

    tabs.param.watch(tab_shown, "active")
    return tabs, lazy
