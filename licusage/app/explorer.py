"""The Sessions tab's state: the filters, the current result, the selection and the actions.

:class:`SessionExplorer` owns everything the views show and calls only :mod:`licusage.queries`,
:mod:`licusage.actions` and :mod:`licusage.catalog`; it never writes SQL. Every call to the
store goes through :meth:`SessionExplorer._guard`, which turns a failure into a notification
(:class:`~licusage.app.lifecycle.Notices`, the dashboard's one notifier).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta, tzinfo
from typing import IO, Any, TypeVar

import pandas as pd
import param
from sqlalchemy.engine import Engine

from .. import actions, catalog, clock, durations, queries
from ..actions import LogoutPreview
from ..display import plural
from ..errors import LicusageError
from . import format as fmt
from .identity import Identity, current_identity, sign_in_holds, signed_in_role
from .lifecycle import Notices, in_document

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_CHOICES: dict[str, str] = {
    "any": "",
    "15 min": "15m",
    "1 h": "1h",
    "2 h": "2h",
    "4 h": "4h",
    "8 h": "8h",
    "1 day": "1d",
    "1 week": "7d",
}  # label -> the duration text kept in ``SessionExplorer.idle_over`` and in the URL
PAGE_SIZE = 25
_OPENING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="licusage-open")
FEW_SESSIONS = 10  # the confirmation lists the sessions up to this many, else counts them


def idle_delta(text: str) -> timedelta | None:
    """The idle filter's duration text (``2h``; blank = any) as a timedelta."""
    return durations.parse_duration(text) if text and text.strip() else None


@dataclass(frozen=True)
class View:
    """What the table shows: the filter of the last Run, its sort and page."""

    filters: dict[str, Any]
    sort: tuple[tuple[str, bool], ...] = ()
    page: int = 1


@dataclass
class Reading:
    """One read of the store for a :class:`View` (what :meth:`SessionExplorer._apply` shows)."""

    view: View
    page: pd.DataFrame
    counts: tuple[int, int] | None  # None: being counted (see SessionExplorer.counting)
    pools: pd.DataFrame | None


class SessionExplorer(Notices):
    """Filters over the active sessions, one page of the result, the selection and the logout.

    Only the shown page is held: paging, sorting, counting, "select all matching" and the
    export each ask the database, so the memory a browser session holds does not grow with
    the store.
    """

    user = param.String(default="", doc="Substring of the user name; blank means all users.")
    host = param.String(default="", doc="Substring of the client host; blank means all hosts.")
    license_types = param.Dict(
        default={}, doc="Product name -> license type names to keep; missing/empty means any."
    )
    idle_over = param.String(
        default="", doc="Keep sessions idle at least this long (``2h``, ``45m``); blank = any."
    )
    products = param.List(default=[], doc="Product names of the store's catalogue, in order.")
    product_types = param.Dict(default={}, doc="Product name -> its license type names.")
    result = param.DataFrame(
        default=None, allow_None=True, doc="The shown page's rows (see format.display_frame)."
    )
    pools = param.DataFrame(
        default=None, allow_None=True, doc="Seats per pool (licusage.queries.pool_usage)."
    )
    sort = param.List(default=[], doc="(column, ascending) pairs of the table's order.")
    page = param.Integer(default=1, bounds=(1, None), doc="The shown page, from 1.")
    page_size = param.Integer(default=PAGE_SIZE, bounds=(1, 1000), doc="Rows per page.")
    selected_ids = param.List(default=[], doc="Session ids ticked, on any page.")
    all_matching = param.Boolean(
        default=False, doc="True when the selection is every session of the current result."
    )
    busy = param.Boolean(default=False, doc="True while a query or an action runs.")
    summary = param.String(default="", doc="Sessions and distinct users in the result.")
    total = param.Integer(default=0, doc="Sessions in the result (all pages).")
    counting = param.Boolean(
        default=False, doc="True while the shown page's result is being counted."
    )
    as_of = param.Date(default=None, allow_None=True, doc="When the result was read (UTC).")

    def __init__(
        self,
        engine: Engine,
        identity: Identity | None = None,
        *,
        zone: tzinfo | None = None,
        notify: Callable[[str, str], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.engine = engine
        self._identity = identity
        self.zone = zone
        self.notices_to = notify
        self.view: View | None = None  # the filter, sort and page of the result shown
        # reads are numbered as they start; the result shown is never replaced by one that
        # started before it (a slow read finishing after a later click's)
        self._reads_started = 0
        self._shown_read = 0
        self.load_catalog()

    # --- who acts ---------------------------------------------------------------------------
    @property
    def identity(self) -> Identity:
        """The identity given at creation, else that of the browser session being served."""
        if self._identity is None:
            self._identity = current_identity(self.engine)
        return self._identity

    def current_role(self) -> str:
        """The role right now: a signed-in user's is read again from the store; under the
        store's accounts, a sign-in that no longer holds (signed out, too old, account
        removed) is not a role that may act: its name says why (e.g. ``signed_out``)."""
        who = self.identity
        if who.refused is not None or who.issued_at is not None:
            holds = sign_in_holds(who)
            if holds != "ok":
                return holds
        if not who.signed_in:
            return who.role
        import panel as pn

        return signed_in_role(self.engine, who.user, pn.state.user_info)

    def may_logout(self) -> bool:
        """Whether the user may log sessions out now (:func:`licusage.actions.may_logout` of
        :meth:`current_role`); the action checks again on the server."""
        return actions.may_logout(self.current_role())

    # --- errors (notify and report: licusage.app.lifecycle.Notices) ----------------------
    def _guard(self, what: str, func: Callable[[], T]) -> T | None:
        """Run `func`; on failure notify and return None (never raises)."""
        try:
            return func()
        except Exception as error:
            self.report(what, error)
        return None

    def set_zone(self, zone: tzinfo | None) -> None:
        """Show times in `zone` (the browser's), the shown page and the seat gauges included."""
        self.zone = zone
        if self.pools is not None:
            self.param.trigger("pools")  # the gauges' expiry dates are the viewer's
        if self._page_rows is None:
            return
        shown = fmt.display_frame(self._page_rows, self.products, zone)
        if self.result is not None and shown.equals(self.result):
            # the browser's zone shows the same times (it names the server's zone, as it
            # does when the page opens): the rows already drawn are not sent and drawn again
            self.param.trigger("result")  # the "as of" stamp follows the zone
        else:
            self.result = shown

    _page_rows: pd.DataFrame | None = None  # the shown page as session_usage_page gave it

    # --- the filter -------------------------------------------------------------------------
    def load_catalog(self) -> bool:
        """Read the products and their license types (the filter widgets follow them)."""
        cat = self._guard("Loading the catalogue", lambda: catalog.read_catalog(self.engine))
        if cat is None:
            return False
        types = {product: cat.types_of(product) for product in cat.products}
        if types != self.product_types or list(cat.products) != self.products:
            self.param.update(products=list(cat.products), product_types=types)
        return True

    def filters(self) -> dict[str, Any]:
        """The current filter as keyword arguments of :func:`licusage.queries.session_usage`
        (paste them into a notebook to reproduce the table). Raises
        :class:`~licusage.errors.InvalidInput` for an idle duration that is not one."""
        return {**self.filters_without_idle(), "idle_over": idle_delta(self.idle_over)}

    def session_filter(self) -> queries.SessionFilter:
        """The current filter, validated once (what the table, the counts and the code show)."""
        return queries.SessionFilter(**self.filters())

    def filter_code(self, max_user: int = 60) -> str:
        """The current filter as a notebook call, e.g.
        ``queries.session_usage(engine, user='alice')`` (a very long user text is shortened)."""
        try:
            where = self.session_filter()
        except LicusageError:  # an idle text that is no duration: shown without it
            where = queries.SessionFilter(**self.filters_without_idle())
        return where.code(max_user=max_user)

    def filters_without_idle(self) -> dict[str, Any]:
        """:meth:`filters` without the idle duration."""
        chosen = {p: list(t) for p, t in self.license_types.items() if t and p in self.products}
        return {
            "user": self.user or None,
            "license_types": chosen or None,
            "host": self.host or None,
        }

    def query_params(self) -> dict[str, str]:
        """The current filter as URL query parameters (``user``, ``host``, ``idle_over`` and
        one per product with a type chosen, types joined by commas)."""
        params: dict[str, str] = {}
        if self.user:
            params["user"] = self.user
        for product in self.products:
            types = self.license_types.get(product)
            if types:
                params[product] = ",".join(types)
        if self.idle_over:
            params["idle_over"] = self.idle_over
        if self.host:
            params["host"] = self.host
        return params

    def apply_query_params(self, params: Mapping[str, str]) -> bool:
        """Set the filter from URL query parameters (see :meth:`query_params`); parameters it
        does not know are ignored, bad values notified and left out. True when all applied."""
        ok = True
        chosen: dict[str, list[str]] = {}
        for product in self.products:
            if params.get(product):
                known = self.product_types.get(product, [])
                wanted = [t.strip() for t in params[product].split(",") if t.strip()]
                bad = [t for t in wanted if t not in known]
                if bad:
                    ok = False
                    self.notify("warning", f"Unknown license type for {product}: {bad[0]!r}")
                chosen[product] = [t for t in wanted if t in known]
        idle = params.get("idle_over", "")
        try:
            idle_delta(idle)
        except LicusageError as error:
            ok = False
            self.notify("warning", f"Idle over: {error}")
            idle = ""
        self.param.update(
            user=params.get("user", ""),
            host=params.get("host", ""),
            license_types={p: t for p, t in chosen.items() if t},
            idle_over=idle.strip(),
        )
        return ok

    # --- reading ----------------------------------------------------------------------------
    def _read(self, view: View, counts: bool, pools: bool) -> Reading:
        """Read `view`'s page (and, when asked, the counts and the seats) from the store."""
        offset = (view.page - 1) * self.page_size
        kwargs = view.filters
        with ThreadPoolExecutor(max_workers=2) as workers:  # the drivers release the GIL
            counted = (
                workers.submit(queries.session_usage_counts, self.engine, **kwargs)
                if counts
                else None
            )
            seats = workers.submit(queries.pool_usage, self.engine) if pools else None
            page = queries.session_usage_page(
                self.engine, **kwargs, offset=offset, limit=self.page_size, sort=list(view.sort)
            )
            total = counted.result() if counted is not None else None
            return Reading(view, page, total, seats.result() if seats is not None else None)

    _users = 0  # distinct users of the result

    def _start_read(self) -> int:
        self._reads_started += 1
        return self._reads_started

    def _apply(
        self, reading: Reading, keep_selection: bool = False, started: int | None = None
    ) -> bool:
        """Show a read: the page, the counts, the seats, in one update. `started`: the number
        of an asynchronous read (:meth:`_start_read`); a synchronous one is the latest."""
        started = self._start_read() if started is None else started
        if started < self._shown_read:
            return False  # a read started later (a gauge click, a page) was shown first
        self._shown_read = started
        view = reading.view
        display = fmt.display_frame(reading.page, self.products, self.zone)
        same = self.view is not None and view.filters == self.view.filters
        counting = reading.counts is None and not (same and not self.counting)
        if reading.counts is not None:
            sessions, users = reading.counts
        elif counting:  # the page is shown before its counts
            sessions, users = len(reading.page) + (view.page - 1) * self.page_size, 0
        else:  # another page or order of the result counted already
            sessions, users = self.total, self._users
        pages = max(1, -(-sessions // self.page_size))
        if (
            view.page > pages and sessions and not counting
        ):  # the result shrank under the shown page
            return self._reload(replace(view, page=pages), keep_selection=keep_selection)
        self.view = view
        self._page_rows = reading.page
        self._users = users
        update: dict[str, Any] = {
            "result": display,
            "total": sessions,
            "page": view.page,
            "sort": [list(s) for s in view.sort],
            "summary": "Counting the sessions…"
            if counting
            else f"{plural(sessions, 'session')} of {plural(users, 'distinct user')}",
            "counting": counting,
            "as_of": clock.to_utc(clock.now()),
            "last_error": "",
        }
        if reading.pools is not None:
            update["pools"] = reading.pools
        if not keep_selection:
            update.update(selected_ids=[], all_matching=False)
        self.param.update(**update)
        return True

    def _reload(self, view: View, keep_selection: bool) -> bool:
        reading = self._guard("Reading the sessions", lambda: self._read(view, True, False))
        return reading is not None and self._apply(reading, keep_selection)

    def _current_view(self, page: int = 1) -> View:
        sort = tuple((str(k), bool(a)) for k, a in self.sort)
        return View(self.filters(), sort, page)

    def _view_to_run(self) -> View | None:
        """The first page of the current filter, for a Run or the page's opening: None (and a
        notification) when the catalogue cannot be read or the filter is not one."""
        if not self.products and not self.load_catalog():
            return None
        try:
            return self._current_view()
        except LicusageError as error:
            self.report("Run", error)
            return None

    def open(self) -> bool:
        """The page opens: read the first page of the current filter now (it goes out with the
        page itself); the counts and the seats are read in a worker thread once the page has
        been sent (while the browser loads its scripts: not competing with building the page)
        and shown by :meth:`finish_open` once the page has loaded."""
        view = self._view_to_run()
        if view is None:
            return False
        self._opening = (None, view)
        _after_page(self._start_counting)
        reading = self._guard("Run", lambda: self._read(view, False, False))
        return reading is not None and self._apply(reading)

    _opening: tuple[Future | None, View] | None = None

    def _start_counting(self) -> None:
        """Start counting the result the page opened with (once)."""
        if self._opening is not None and self._opening[0] is None:
            self._opening = (self._count_later(self._opening[1]), self._opening[1])

    async def finish_open(self) -> bool:
        """Show the counts and the seats :meth:`open` started to read (unless another
        filter's result is shown by now)."""
        self._start_counting()
        opening, self._opening = self._opening, None
        if opening is None or opening[0] is None:
            return False
        return await self._show_counts(opening[0], opening[1])

    def _count_later(self, view: View) -> Future:
        """Count `view`'s sessions and users and read the seats, in a worker thread."""
        filters = view.filters
        return _OPENING.submit(
            lambda: (
                queries.session_usage_counts(self.engine, **filters),
                queries.pool_usage(self.engine),
            )
        )

    async def _show_counts(self, future: Future, view: View | None) -> bool:
        """Show the counts and seats `future` reads for `view`, unless another filter's result
        was shown meanwhile."""
        try:
            counts, pools = await asyncio.wrap_future(future)
        except Exception as error:
            self.counting = False
            self.report("Counting the sessions", error)
            return False

        def show() -> bool:
            if view is None or self.view is None or self.view.filters != view.filters:
                return False  # another filter's result came first
            sessions, users = counts
            self._users = users
            self.param.update(
                total=sessions,
                pools=pools,
                counting=False,
                summary=f"{plural(sessions, 'session')} of {plural(users, 'distinct user')}",
            )
            self.param.trigger("result")  # the pager and the count line follow
            return True

        return await in_document(show)

    def run(self) -> bool:
        """Query the first page, the counts and the seats for the current filters; False (and
        a notification) when that failed. The selection stays when the filter is the one
        shown (a Run that reads the same result again), else it clears."""
        view = self._view_to_run()
        if view is None:
            return False
        self.busy = True
        try:
            reading = self._guard("Run", lambda: self._read(view, True, True))
            return reading is not None and self._apply(reading, self._same_filter(reading.view))
        finally:
            self.busy = False

    def _same_filter(self, view: View) -> bool:
        return self.view is not None and view.filters == self.view.filters

    async def run_async(self, first_rows: int | None = None) -> bool:
        """:meth:`run` with the queries in a worker thread, so the page shows it is loading;
        the result is applied in one document update (the table, count line and seats change
        together)."""
        if first_rows is not None:
            self.page_size = first_rows
        view = self._view_to_run()
        if view is None:
            return False
        counted = self._count_later(view)
        keep = self._same_filter(view)
        if not await self._read_async(view, counts=False, pools=False, what="Run", keep=keep):
            return False
        await self._show_counts(counted, view)
        return True

    async def _read_async(
        self, view: View, *, counts: bool, pools: bool, what: str, keep: bool = False
    ) -> bool:
        self.busy = True
        started = self._start_read()
        try:
            reading: Reading | Exception = await asyncio.to_thread(self._read, view, counts, pools)
        except Exception as error:
            reading = error

        def show() -> bool:
            self.busy = False
            if isinstance(reading, Exception):
                self.report(what, reading)
                return False
            return self._apply(reading, keep_selection=keep, started=started)

        return await in_document(show)

    def go_to_page(self, page: int) -> bool:
        """Show page `page` (from 1) of the current result, read by the database."""
        if self.view is None:
            return False
        pages = max(1, -(-self.total // self.page_size))
        view = replace(self.view, page=min(max(int(page), 1), pages))
        reading = self._guard("Reading the page", lambda: self._read(view, False, False))
        return reading is not None and self._apply(reading, keep_selection=True)

    def sort_by(self, sort: Sequence[tuple[str, bool]]) -> bool:
        """Sort the current result by `sort` ((column, ascending) pairs; see
        :func:`licusage.queries.session_usage_page`) and show its first page."""
        if self.view is None:
            self.sort = [list(s) for s in sort]
            return False
        view = replace(self.view, sort=tuple((str(k), bool(a)) for k, a in sort), page=1)
        reading = self._guard("Sorting", lambda: self._read(view, False, False))
        return reading is not None and self._apply(reading, keep_selection=True)

    def refresh(self) -> bool:
        """Read the shown page, the counts and the seats again; the selection stays."""
        view = self.view
        if view is None:
            return self.run()
        reading = self._guard("Refreshing", lambda: self._read(view, True, True))
        return reading is not None and self._apply(reading, keep_selection=True)

    async def refresh_async(self) -> bool:
        """:meth:`refresh` with the reads in a worker thread (the auto-refresh)."""
        if self.view is None:
            return False
        return await self._read_async(
            self.view, counts=True, pools=True, what="Refreshing", keep=True
        )

    def refresh_pools(self) -> None:
        pools = self._guard("Reading seats", lambda: queries.pool_usage(self.engine))
        if pools is not None:
            self.pools = pools

    def filter_pool(self, product: str, license_type: str) -> bool:
        """Show only sessions holding `product`'s `license_type` (other product filters clear)."""
        return self._choose_pool(product, license_type) and self.run()

    async def filter_pool_async(self, product: str, license_type: str) -> bool:
        """:meth:`filter_pool` through :meth:`run_async` (a seat gauge's click on a served page:
        the first page read in a worker thread, then the counts)."""
        return self._choose_pool(product, license_type) and await self.run_async()

    def _choose_pool(self, product: str, license_type: str) -> bool:
        if product not in self.products:
            return False
        self.license_types = {product: [license_type]}
        return True

    # --- selection --------------------------------------------------------------------------
    def select(self, session_ids: Sequence[int]) -> None:
        """Select exactly these sessions."""
        self.param.update(selected_ids=[int(i) for i in session_ids], all_matching=False)

    def tick_page(self, session_ids: Sequence[int]) -> None:
        """The ticks of the shown page are `session_ids`: ticks on other pages stay."""
        shown = set() if self.result is None else {int(i) for i in self.result.index}
        ticked = [int(i) for i in session_ids]
        if self.all_matching and set(ticked) == shown:
            return
        kept = [] if self.all_matching else [i for i in self.selected_ids if i not in shown]
        self.param.update(selected_ids=kept + ticked, all_matching=False)

    def select_all_matching(self) -> int:
        """Select every session of the current result, on every page (the database lists them
        when they are acted on); returns how many."""
        count = self.total if self.view is not None else 0
        self.param.update(selected_ids=[], all_matching=bool(count))
        return count

    @property
    def selection_count(self) -> int:
        """Sessions selected: all matching, or those ticked."""
        return self.total if self.all_matching else len(self.selected_ids)

    def selection_ids(self) -> list[int]:
        """The ids the selection names (read from the database for "all matching")."""
        if self.all_matching and self.view is not None:
            return queries.session_usage_ids(self.engine, **self.view.filters)
        return sorted({int(i) for i in self.selected_ids})

    # --- export -----------------------------------------------------------------------------
    def export_csv(self) -> IO[str] | None:
        """The whole current result as CSV (the CLI's format), read from the database in
        batches into a temporary file that spills to disk: memory stays bounded."""
        if self.view is None:
            return None
        filters = self.view.filters

        def write() -> IO[str]:
            out = tempfile.SpooledTemporaryFile(max_size=4 << 20, mode="w+", newline="")  # noqa: SIM115 - the download reads and closes it
            fmt.usage_csv(queries.iter_session_usage(self.engine, **filters), out)
            out.seek(0)
            return out

        return self._guard("Exporting the sessions", write)

    # --- logging out ------------------------------------------------------------------------
    def preview_logout(self, session_ids: Sequence[int] | None = None) -> LogoutPreview | None:
        """What logging out the selection (or `session_ids`) as the signed-in user would do,
        read from the store by :func:`licusage.actions.preview_logout` (None and a
        notification on failure)."""
        me = self.identity.user

        def read() -> LogoutPreview:
            ids = self.selection_ids() if session_ids is None else session_ids
            return actions.preview_logout(self.engine, ids, me)

        return self._guard("Preparing the logout", read)

    def logout(self, session_ids: Sequence[int] | None = None) -> actions.LogoutResult | None:
        """Log the sessions out as the signed-in user, with the role read from the store now.

        A viewer is refused by :func:`licusage.actions.authorized_logout` (and audited). On
        success the page, the counts and the seats are read again and the selection clears.
        """
        who = self.identity
        self.busy = True
        try:
            outcome = self._guard(
                "Logout",
                lambda: actions.authorized_logout(
                    self.engine,
                    self.selection_ids()
                    if session_ids is None
                    else sorted({int(i) for i in session_ids}),
                    who.user,
                    self.current_role(),
                    origin=who.origin,
                ),
            )
        finally:
            self.busy = False
        if outcome is None:
            return None
        self.param.update(selected_ids=[], all_matching=False)
        view = self.view
        if view is not None:
            reading = self._guard("Reading the sessions", lambda: self._read(view, True, True))
            if reading is not None:
                self._apply(reading, keep_selection=True)
        else:
            self.refresh_pools()
        self.notify("success", outcome.summary())
        return outcome


def _after_page(func: Callable[[], None]) -> None:
    """Run `func` once the page being served has been built (a next-tick callback of its
    document); directly elsewhere."""
    import panel as pn

    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        func()
        return
    doc.add_next_tick_callback(func)
